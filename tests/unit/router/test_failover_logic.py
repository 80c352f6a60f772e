"""Failover without I/O: the bounded audio log and what the client gets after a replay."""

from __future__ import annotations

from services.common.pb import recognizer_pb2 as pb
from services.router.failover import AudioLog, ResultFilter


def word(text: str, start: int, end: int) -> pb.Word:
    return pb.Word(text=text, start_ms=start, end_ms=end)


def segment(start: int, end: int, *words: pb.Word, text: str = "") -> pb.RecognizeResponse:
    text = text or "".join(w.text for w in words)
    return pb.RecognizeResponse(
        segment=pb.Segment(text=text, words=words, start_ms=start, end_ms=end)
    )


def partial(text: str, start: int) -> pb.RecognizeResponse:
    return pb.RecognizeResponse(partial=pb.Partial(text=text, start_ms=start))


FIRST = segment(
    0, 1890, word("ちょっと", 580, 1030), word("遅い", 1030, 1390), word("昼食", 1390, 1890)
)
SECOND = segment(1890, 4900, word("をとる", 1890, 2220), word("ファミリー", 2930, 4900))
THIRD = segment(4900, 6270, word("たのです", 4900, 6270))
FINISHED = pb.RecognizeResponse(finished=pb.Finished(text="backend's own text"))


def passed(results: ResultFilter, *replies: pb.RecognizeResponse) -> list[pb.RecognizeResponse]:
    out = [results.feed(r) for r in replies]
    return [r for r in out if r is not None]


def test_audio_log_keeps_audio_within_its_bound() -> None:
    """The log keeps every chunk until the bound, then drops them all and says so."""
    log = AudioLog(limit=10)
    log.add(b"12345")
    log.add(b"67890")
    assert (log.chunks, log.overflowed) == ([b"12345", b"67890"], False)
    log.add(b"x")
    assert (log.chunks, log.overflowed) == ([], True)


def test_without_failover_everything_but_accepted_passes_unchanged() -> None:
    """Before any failover, partials, segments and finished pass through as they are."""
    results = ResultFilter("ja")
    replies = [partial("ちょっと", 0), FIRST, SECOND, FINISHED]
    accepted = pb.RecognizeResponse(accepted=pb.Accepted(backend="b"))
    assert passed(results, accepted, *replies) == replies


def test_replayed_segments_the_client_has_are_dropped() -> None:
    """After a failover, the segments already sent are dropped and the new ones pass once."""
    results = ResultFilter("ja")
    passed(results, FIRST)
    results.failover()
    out = passed(results, partial("ちょっと", 0), FIRST, partial("をとる", 1890), SECOND, THIRD)
    assert [r.segment.text for r in out if r.HasField("segment")] == [
        "をとるファミリー",
        "たのです",
    ]
    assert [r.partial.text for r in out if r.HasField("partial")] == ["をとる"]


def test_finished_after_failover_is_what_the_client_received() -> None:
    """After a failover, finished is rebuilt from the segments the client got, in order."""
    results = ResultFilter("ja")
    passed(results, FIRST)
    results.failover()
    out = passed(results, FIRST, SECOND, THIRD, FINISHED)
    assert out[-1].finished.text == "ちょっと遅い昼食をとるファミリーたのです"
    assert [w.text for w in out[-1].finished.words][:2] == ["ちょっと", "遅い"]


def test_differently_cut_segment_loses_only_the_words_already_sent() -> None:
    """A replacement segment spanning old and new audio keeps only the words after the old."""
    results = ResultFilter("en")
    passed(
        results,
        segment(0, 1000, word("good", 0, 400), word("morning", 400, 1000), text="good morning"),
    )
    results.failover()
    merged = segment(
        0,
        2000,
        word("good", 0, 400),
        word("morning", 400, 1000),
        word("all", 1200, 2000),
        text="good morning all",
    )
    out = passed(results, merged)
    assert [(r.segment.text, r.segment.start_ms) for r in out] == [("all", 1000)]


def test_segments_without_times_are_matched_by_count() -> None:
    """Without word times, the first replayed segments are dropped by number."""
    results = ResultFilter("ja")
    first, second = segment(0, 0, text="いち"), segment(0, 0, text="に")
    passed(results, first)
    results.failover()
    out = passed(results, partial("い", 0), first, second)
    assert [r.segment.text for r in out] == ["に"]


def test_two_failovers_still_give_each_segment_once() -> None:
    """A second failover replays again, and each segment still reaches the client once."""
    results = ResultFilter("ja")
    sent = passed(results, FIRST)
    results.failover()
    sent += passed(results, FIRST, SECOND)
    results.failover()
    sent += passed(results, FIRST, SECOND, THIRD)
    assert [r.segment.start_ms for r in sent] == [0, 1890, 4900]
