"""Joining recognised text the way each language writes it."""

from __future__ import annotations

# Languages written without spaces between words. Engines such as vosk-server put spaces
# between Japanese words; mimi's answers have none.
UNSPACED_LANGUAGES = frozenset({"ja", "zh", "th", "lo", "km", "my"})


def is_unspaced(language: str) -> bool:
    return language.split("-")[0].lower() in UNSPACED_LANGUAGES


def _needs_space(left: str, right: str) -> bool:
    """In unspaced text, keep a space only between two runs of Latin letters or digits."""
    return left[-1:].isascii() and right[:1].isascii()


def join_words(language: str, words: list[str]) -> str:
    parts = [w for w in words if w]
    if not is_unspaced(language):
        return " ".join(parts)
    text = ""
    for part in parts:
        text += (" " if text and _needs_space(text, part) else "") + part
    return text


def normalise_text(language: str, text: str) -> str:
    """Collapse whitespace; in unspaced languages, drop it except between Latin words."""
    return join_words(language, text.split())
