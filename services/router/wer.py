"""Word error rate of a shadow's final text against the primary's (rapidfuzz's Levenshtein).

Languages written without spaces (ja, zh, …) have no words to split on, and engines place
word boundaries differently: their rate is over characters (a character error rate).
"""

from __future__ import annotations

from rapidfuzz.distance import Levenshtein

from services.common.text import is_unspaced, normalise_text


def tokens(language: str, text: str) -> list[str]:
    text = normalise_text(language, text)
    return list(text.replace(" ", "")) if is_unspaced(language) else text.split()


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance over tokens: substitutions, insertions and deletions."""
    return int(Levenshtein.distance(a, b))


def word_error_rate(language: str, reference: str, hypothesis: str) -> tuple[float, int, int]:
    """(rate, errors, reference tokens); an empty reference gives 1.0 unless both are empty."""
    ref, hyp = tokens(language, reference), tokens(language, hypothesis)
    errors = edit_distance(ref, hyp)
    return (errors / len(ref) if ref else float(bool(hyp))), errors, len(ref)
