"""Local agreement (the policy of ufal/whisper_streaming): of the words of an open utterance,
hold stable only those that two consecutive decodes agree on.

Whisper re-decodes the whole open utterance at every step, and its last words change as more
audio arrives. `LocalAgreement` commits the longest common prefix of the last two hypotheses;
committed words never change within the utterance. The temporary hypothesis shown is the
committed words followed by what the newest decode says after them.
"""

from __future__ import annotations

from collections.abc import Sequence


class LocalAgreement:
    def __init__(self) -> None:
        self.committed: list[str] = []
        self.tail: list[str] = []
        self._previous: list[str] = []

    def update(self, words: Sequence[str], separator: str = " ") -> list[str]:
        """Take a new hypothesis of the whole utterance; return the words to show."""
        words = list(words)
        agreed = _common_prefix(self._previous, words)
        if agreed > len(self.committed) and words[: len(self.committed)] == self.committed:
            self.committed = words[:agreed]
        self._previous = words
        self.tail = words[_after(words, self.committed, separator) :]
        return self.shown

    @property
    def shown(self) -> list[str]:
        return [*self.committed, *self.tail]


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _after(words: Sequence[str], committed: Sequence[str], separator: str) -> int:
    """Index of the first of `words` past the committed ones.

    A new decode may disagree with committed words ("a meeting has" after "the meeting
    has"), or, where words are written without spaces, cut the same text into other pieces
    (中職 or 中 + 職). So the committed words' last few are looked for in the new words (the
    match nearest the committed length wins); failing that, the committed characters are
    counted (unspaced languages) or the committed words (others).
    """
    if list(words[: len(committed)]) == list(committed):
        return len(committed)
    for size in range(min(3, len(committed)), 0, -1):
        last = list(committed[-size:])
        ends = [i + size for i in range(len(words) - size + 1) if list(words[i : i + size]) == last]
        if ends:
            return min(ends, key=lambda end: abs(end - len(committed)))
    if separator:
        return min(len(committed), len(words))
    length = sum(len(word) for word in committed)
    covered = 0
    for index, word in enumerate(words):
        if covered >= length:
            return index
        covered += len(word)
    return len(words)
