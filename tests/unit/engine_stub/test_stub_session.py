"""The engine session without sockets: replies, text encoding, transcripts, violations."""

from __future__ import annotations

import hashlib
import itertools
import json
import random

import pytest

from engine_stub.session import ProtocolViolation, Session, encode
from engine_stub.transcripts import load_table
from services.common.engine_messages import EOF_MESSAGE
from tests.support.audio import frames, sample_audio
from tests.support.engine_stub import expected_segments

TABLE = load_table()


def noise(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def digest(audio: bytes) -> str:
    return f"bytes={len(audio)} sha256={hashlib.sha256(audio).hexdigest()[:16]}"


def test_partial_carries_running_byte_total() -> None:
    """Each audio frame is answered by a partial naming all bytes received so far."""
    session = Session(16000, 0, TABLE)
    replies = [session.audio(b"\x01\x00" * n).message for n in (1600, 3200, 10)]
    assert replies == [
        {"partial": "bytes=3200"},
        {"partial": "bytes=9600"},
        {"partial": "bytes=9620"},
    ]


def test_final_encodes_count_and_hash_of_all_audio() -> None:
    """The eof reply names the byte count and SHA-256 prefix of all audio, one word spanning it."""
    audio = noise(48000)
    session = Session(16000, 0, TABLE)
    for chunk in frames(audio, 7000):
        session.audio(chunk)
    reply = session.text(EOF_MESSAGE)
    assert reply is not None
    assert reply.final
    text = digest(audio)
    assert reply.message == {
        "text": text,
        "result": [{"conf": 1.0, "end": 1.5, "start": 0.0, "word": text}],
    }


def test_final_without_audio_is_empty_text() -> None:
    """eof before any audio gives `{"text": ""}` without a result."""
    reply = Session(16000, 0, TABLE).text(EOF_MESSAGE)
    assert reply is not None
    assert reply.message == {"text": ""}


@pytest.mark.parametrize(
    "text", ['{"eof": 1}', '{"eof":1}', "eof", "", '{"reset": 1}', "[1]", '{"config": 5}']
)
def test_other_text_is_a_violation(text: str) -> None:
    """Text that is neither exactly `{"eof" : 1}` nor a config object is a protocol violation."""
    with pytest.raises(ProtocolViolation):
        Session(16000, 0, TABLE).text(text)


def test_odd_frame_is_a_violation() -> None:
    """An odd-length audio frame is a protocol violation (stricter than vosk)."""
    with pytest.raises(ProtocolViolation):
        Session(16000, 0, TABLE).audio(b"\x00" * 3)


def test_bad_sample_rate_is_a_violation() -> None:
    """A config whose sample_rate is not a positive number is a protocol violation."""
    with pytest.raises(ProtocolViolation):
        Session(16000, 0, TABLE).text('{"config": {"sample_rate": "fast"}}')


def test_config_before_audio_sets_rate_and_words() -> None:
    """A config before audio sets the sample rate of word times and can turn words off."""
    session = Session(16000, 0, TABLE)
    assert session.text('{"config": {"sample_rate": 8000, "words": 1}}') is None
    session.audio(b"\x00" * 16000)
    reply = session.text(EOF_MESSAGE)
    assert reply is not None
    assert reply.message["result"][0]["end"] == 1.0
    quiet = Session(16000, 0, TABLE)
    quiet.text('{"config": {"words": 0}}')
    quiet.audio(b"\x00" * 16000)
    reply = quiet.text(EOF_MESSAGE)
    assert reply is not None
    assert "result" not in reply.message


def test_config_after_audio_is_ignored() -> None:
    """A config after the first audio frame changes nothing, as with vosk-server."""
    session = Session(16000, 0, TABLE)
    session.audio(b"\x00" * 32000)
    assert session.text('{"config": {"sample_rate": 8000}}') is None
    reply = session.text(EOF_MESSAGE)
    assert reply is not None
    assert reply.message["result"][0]["end"] == 1.0


@pytest.mark.parametrize("size", [640, 3200, 6402, 50000])
def test_segment_ms_cuts_segments_whatever_the_frame_size(size: int) -> None:
    """With segment_ms, a segment is determined every that much audio; eof gives the rest."""
    audio = noise(32000 * 2 + 1000)
    session = Session(16000, 500, TABLE)
    texts = []
    for chunk in frames(audio, size):
        message = session.audio(chunk).message
        if "text" in message:
            texts.append(message["text"])
    reply = session.text(EOF_MESSAGE)
    assert reply is not None
    texts.append(reply.message["text"])
    cuts = [0, 16000, 32000, 48000, 64000, len(audio)]
    if size == 50000:  # the first frame crosses three boundaries: one segment covers them
        cuts = [0, 48000, 64000, len(audio)]
    assert texts == [digest(audio[a:b]) for a, b in itertools.pairwise(cuts)]


def test_segment_ms_final_with_nothing_left_is_empty() -> None:
    """When the audio ends on a segment boundary, the final reply is `{"text": ""}`."""
    session = Session(16000, 100, TABLE)
    assert session.audio(b"\x00" * 3200).message["text"] == digest(b"\x00" * 3200)
    reply = session.text(EOF_MESSAGE)
    assert reply is not None
    assert reply.message == {"text": ""}


def run_sample(audio: bytes, sizes: list[int]) -> list[dict[str, object]]:
    session = Session(16000, 0, TABLE)
    replies, offset, turn = [], 0, 0
    while offset < len(audio):
        size = sizes[turn % len(sizes)]
        replies.append(session.audio(audio[offset : offset + size]).message)
        offset, turn = offset + size, turn + 1
    final = session.text(EOF_MESSAGE)
    assert final is not None
    return [*replies, final.message]


@pytest.mark.parametrize("sizes", [[3200], [32000], [2], [1000, 18562, 4, 77770]])
def test_sample_gives_its_segments_as_the_audio_arrives(sizes: list[int]) -> None:
    """The real sample yields its three segments, each in reply to the frame reaching its end."""
    replies = run_sample(sample_audio(), sizes)
    segments = [(i, r) for i, r in enumerate(replies) if "text" in r]
    expected = expected_segments()
    assert [r for _, r in segments] == [{"text": s.text, "result": s.words} for s in expected]
    received, reached = 0, []
    for i, size in enumerate(sizes * len(replies)):
        received += size
        reached += [i] * sum(1 for s in expected[:-1] if received - size < s.end_byte <= received)
        if len(reached) == 2:
            break
    assert [i for i, _ in segments] == [*reached, len(replies) - 1]


def test_one_frame_reaching_two_segment_ends_gets_them_merged() -> None:
    """A frame that reaches two segment ends is answered by one segment holding both."""
    first, second, last = expected_segments()
    replies = run_sample(sample_audio(), [150000])
    assert replies == [
        {"text": first.text + second.text, "result": first.words + second.words},
        {"partial": "たのです"},
        {"text": last.text, "result": last.words},
    ]


def test_sample_partials_carry_the_words_heard() -> None:
    """Between segments, partials carry the current segment's words whose end has arrived."""
    replies = run_sample(sample_audio(), [32000])
    assert replies[2] == {"partial": "をとるため"}
    assert replies[3] == {"partial": "をとるためファミリー"}


def test_changed_sample_falls_back_to_byte_text_after_last_segment() -> None:
    """When the audio stops matching, the rest since the last segment is in byte mode."""
    audio = bytearray(sample_audio())
    audio[100000] ^= 0xFF
    replies = run_sample(bytes(audio), [3200])
    texts = [r["text"] for r in replies if "text" in r]
    first_end = expected_segments()[0].end_byte
    assert texts == [expected_segments()[0].text, digest(bytes(audio[first_end:]))]


def test_truncated_sample_ends_in_byte_text() -> None:
    """eof before the sample's end gives the byte text of the audio after the last segment."""
    audio = sample_audio()[:150000]
    texts = [r["text"] for r in run_sample(audio, [3200]) if "text" in r]
    second_end = expected_segments()[1].end_byte
    assert texts[:2] == [s.text for s in expected_segments()[:2]]
    assert texts[2] == digest(audio[second_end:])


def test_sample_at_another_rate_is_not_recognised() -> None:
    """The sample declared as 8 kHz matches no transcript and gets byte text."""
    session = Session(16000, 0, TABLE)
    session.text('{"config": {"sample_rate": 8000}}')
    for chunk in frames(sample_audio(), 3200):
        assert "partial" in session.audio(chunk).message
    reply = session.text(EOF_MESSAGE)
    assert reply is not None
    assert reply.message["text"] == digest(sample_audio())


def test_reset_gives_final_and_keeps_the_session() -> None:
    """`{"reset" : 1}` answers the final segment so far and the session goes on."""
    session = Session(16000, 0, TABLE)
    session.audio(b"\x02\x00" * 800)
    reply = session.text('{"reset" : 1}')
    assert reply is not None
    assert not reply.final
    assert reply.message["text"] == digest(b"\x02\x00" * 800)
    assert session.audio(b"\x00\x00" * 800).message == {"partial": "bytes=3200"}


def test_encode_is_multiline_json() -> None:
    """Replies are pretty JSON like vosk's, so a client has to parse them."""
    text = encode({"partial": "ちょっと"})
    assert "\n" in text
    assert "ちょっと" in text
    assert json.loads(text) == {"partial": "ちょっと"}
