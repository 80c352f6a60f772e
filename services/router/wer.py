"""Word error rate of a shadow's final text against the primary's, without dependencies.

Languages written without spaces (ja, zh, …) have no words to split on, and engines place
word boundaries differently: their rate is over characters (a character error rate).
"""

from __future__ import annotations

from services.common.text import is_unspaced, normalise_text

# Beyond this many cells the exact edit distance costs too much CPU for a comparison that
# is only a statistic: the difference in length plus the middle's length bounds it instead.
MAX_CELLS = 1_000_000


def tokens(language: str, text: str) -> list[str]:
    text = normalise_text(language, text)
    return list(text.replace(" ", "")) if is_unspaced(language) else text.split()


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance over tokens: substitutions, insertions and deletions."""
    head = 0  # a common prefix and suffix cost nothing
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    a, b = a[head : len(a) - tail], b[head : len(b) - tail]
    if len(a) * len(b) > MAX_CELLS:
        return max(len(a), len(b))
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def word_error_rate(language: str, reference: str, hypothesis: str) -> tuple[float, int, int]:
    """(rate, errors, reference tokens); an empty reference gives 1.0 unless both are empty."""
    ref, hyp = tokens(language, reference), tokens(language, hypothesis)
    errors = edit_distance(ref, hyp)
    return (errors / len(ref) if ref else float(bool(hyp))), errors, len(ref)
