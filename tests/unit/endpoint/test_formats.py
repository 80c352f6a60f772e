"""The mimi result formats without sockets: internal results → the JSON clients receive."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.common.pb import recognizer_pb2 as pb
from services.endpoint.formats import FINISHED, IN_PROGRESS, ResultFormatter
from services.endpoint.handshake import Options
from tests.support.audio import expected

EXPECTED = expected()


def fixture_words() -> list[pb.Word]:
    return [
        pb.Word(
            text=w["result"],
            pronunciation=w["pronunciation"],
            start_ms=w["time"][0],
            end_ms=w["time"][1],
            confidence=1.0,
        )
        for w in EXPECTED["words"]
    ]


def fixture_replies() -> list[pb.RecognizeResponse]:
    """The fixture's segments as the backend sends them, then finished."""
    replies = []
    for segment in EXPECTED["nict_v2_determined_segments"]:
        replies.append(pb.RecognizeResponse(partial=pb.Partial(text=segment["result"][:2])))
        replies.append(
            pb.RecognizeResponse(
                segment=pb.Segment(
                    text=segment["result"],
                    words=[pb.Word(text=t) for t in segment["words"]],
                    start_ms=segment["time"],
                    end_ms=segment["time"] + 1,
                )
            )
        )
    finished = pb.Finished(text=EXPECTED["text"], words=fixture_words())
    replies.append(pb.RecognizeResponse(finished=finished))
    return replies


def run(process: str, options: Options, replies: list[pb.RecognizeResponse]) -> list[Any]:
    formatter = ResultFormatter(process, "ja", options, "s1")
    out = []
    for number, reply in enumerate(replies):
        out.extend(formatter.feed(reply, number * 100.0))
    return out


def test_asr_final_is_the_fixtures_words() -> None:
    """asr: recog-finished lists every word with pronunciation and [start, end] ms."""
    messages = run("asr", Options(), fixture_replies())
    assert {m["type"] for m in messages} == {"asr#mimilvcsr"}
    assert messages[-1]["status"] == FINISHED
    assert messages[-1]["response"] == EXPECTED["words"]
    assert all(m["status"] == IN_PROGRESS for m in messages[:-1])


def test_v1_final_is_productions_morpheme_lines() -> None:
    """nict-asr v1, Japanese: one recog-finished whose lines are production's, field for field."""
    messages = run("nict-asr", Options(), fixture_replies())
    assert [m["status"] for m in messages] == [FINISHED]
    lines = [entry["result"] for entry in messages[0]["response"]]
    assert messages[0]["type"] == "asr#nictlvcsr"
    assert lines == EXPECTED["nict_v1_results"]


def test_v1_english_repeats_the_surface_as_base_form() -> None:
    """nict-asr v1, English: the engine's words, surface as base form, POS fields empty."""
    formatter = ResultFormatter("nict-asr", "en", Options(), "s1")
    words = [pb.Word(text="open", start_ms=0, end_ms=300), pb.Word(text="the", end_ms=400)]
    finished = pb.RecognizeResponse(finished=pb.Finished(text="open the", words=words))
    [message] = formatter.feed(finished, 0.0)
    assert [e["result"] for e in message["response"]] == [
        "open||open|||||",
        "the||the|||||",
        "|||SENT-START-END||||",
        "|||UTT-END||||",
    ]


def test_v2_progressive_gives_segments_and_repeats_the_last() -> None:
    """v2 progressive: each determined segment as it comes; the final repeats the last."""
    messages = run("nict-asr", Options("v2", progressive=True), fixture_replies())
    expected = [
        {**segment, "determined": True} for segment in EXPECTED["nict_v2_determined_segments"]
    ]
    assert [m["response"][0] for m in messages[:-1]] == expected
    assert messages[-1]["status"] == FINISHED
    assert messages[-1]["response"] == [expected[-1]]


def test_v2_not_progressive_gives_all_text_in_the_final() -> None:
    """v2 without progressive: only recog-finished, carrying the whole sentence."""
    messages = run("nict-asr", Options("v2"), fixture_replies())
    assert [m["status"] for m in messages] == [FINISHED]
    entry = messages[0]["response"][0]
    assert entry["result"] == EXPECTED["text"]
    assert entry["determined"] is True


def test_v2_temporary_hypotheses_are_rate_limited() -> None:
    """v2 temporary: a partial becomes determined=false at most every temporary_interval ms."""
    formatter = ResultFormatter("nict-asr", "ja", Options("v2", temporary=True), "s")
    partial = pb.RecognizeResponse(partial=pb.Partial(text="ちょっと"))
    sent = [t for t in range(0, 5000, 100) if formatter.feed(partial, float(t))]
    assert sent == [0, 1500, 3000, 4500]
    message = formatter.feed(partial, 6000.0)[0]
    assert message["response"][0]["determined"] is False


def test_temporary_off_sends_no_partials() -> None:
    """Without temporary=true partial results are never sent."""
    messages = run("nict-asr", Options("v2", progressive=True), fixture_replies())
    assert all(e["determined"] for m in messages for e in m["response"])


def test_error_message_shape() -> None:
    """An error after the upgrade is one message of type error with code and retryable."""
    formatter = ResultFormatter("asr", "ja", Options(), "s9")
    assert formatter.error("idle_timeout", "no frame", False) == {
        "type": "error",
        "session_id": "s9",
        "status": "error",
        "error": {"code": "idle_timeout", "message": "no frame", "retryable": False},
    }


words = st.builds(
    pb.Word,
    text=st.text(max_size=8),
    pronunciation=st.text(max_size=8),
    start_ms=st.integers(0, 2**31 - 1),
    end_ms=st.integers(0, 2**31 - 1),
    confidence=st.floats(0, 1),
)
replies = st.one_of(
    st.builds(
        lambda t, w, s: pb.RecognizeResponse(partial=pb.Partial(text=t, words=w, start_ms=s)),
        st.text(max_size=10),
        st.lists(words, max_size=3),
        st.integers(0, 10**6),
    ),
    st.builds(
        lambda t, w: pb.RecognizeResponse(segment=pb.Segment(text=t, words=w)),
        st.text(max_size=10),
        st.lists(words, max_size=3),
    ),
    st.builds(lambda: pb.RecognizeResponse(accepted=pb.Accepted(backend="b"))),
    st.builds(lambda: pb.RecognizeResponse()),
)
options = st.builds(
    Options,
    response_format=st.sampled_from(["v1", "v2"]),
    progressive=st.booleans(),
    temporary=st.booleans(),
    temporary_interval_ms=st.integers(100, 60000),
)


@given(
    st.sampled_from(["asr", "nict-asr"]),
    options,
    st.lists(replies, max_size=12),
    st.lists(words, max_size=5),
)
def test_any_results_give_json_and_one_final(
    process: str, opts: Options, stream: list[pb.RecognizeResponse], final_words: list[pb.Word]
) -> None:
    """Arbitrary result streams: JSON messages in progress, then exactly one recog-finished."""
    finished = pb.RecognizeResponse(finished=pb.Finished(words=final_words))
    messages = run(process, opts, [*stream, finished])
    assert [m["status"] for m in messages].count(FINISHED) == 1
    assert messages[-1]["status"] == FINISHED
    for message in messages:
        json.dumps(message, ensure_ascii=False)
        assert set(message) == {"type", "session_id", "status", "response"}
