"""The shadow comparison's error rate: words for spaced languages, characters for ja."""

from __future__ import annotations

from services.router.wer import edit_distance, word_error_rate


def test_identical_texts_have_no_errors() -> None:
    """The same text is a rate of 0."""
    assert word_error_rate("en", "the cat sat", "the  cat sat") == (0.0, 0, 3)


def test_substitution_insertion_and_deletion_each_count_once() -> None:
    """One substituted, one inserted and one deleted word are three errors."""
    rate, errors, words = word_error_rate("en", "a b c d", "a x c d e")
    assert (errors, words) == (2, 4)
    assert rate == 0.5
    assert edit_distance(list("abcd"), list("acde")) == 2


def test_japanese_is_compared_by_characters() -> None:
    """ja text has no spaces: one wrong character of eight is a rate of 1/8."""
    rate, errors, words = word_error_rate("ja", "ちょっと遅い昼食", "ちょっと早い昼食")
    assert (errors, words) == (1, 8)
    assert round(rate, 3) == 0.125


def test_empty_reference() -> None:
    """Against an empty reference, any text is a rate of 1 and none is 0."""
    assert word_error_rate("en", "", "") == (0.0, 0, 0)
    assert word_error_rate("en", "", "hello")[0] == 1.0
