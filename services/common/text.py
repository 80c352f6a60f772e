"""Joining recognised text the way each language writes it."""

from __future__ import annotations

# Languages written without spaces between words. Engines such as vosk-server put spaces
# between Japanese words; mimi's answers have none.
UNSPACED_LANGUAGES = frozenset({"ja", "zh", "th", "lo", "km", "my"})


def is_unspaced(language: str) -> bool:
    return language.split("-")[0].lower() in UNSPACED_LANGUAGES


def join_words(language: str, words: list[str]) -> str:
    return ("" if is_unspaced(language) else " ").join(w for w in words if w)


def normalise_text(language: str, text: str) -> str:
    """Collapse whitespace; remove it entirely for unspaced languages."""
    parts = text.split()
    return join_words(language, parts)
