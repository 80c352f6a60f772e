"""One audio stream crosses endpoint → router → intermediate → engine_stub and back."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from tests.support.audio import SECOND, expected
from tests.support.client import mimi_headers, stream_session
from tests.system.conftest import Target

pytestmark = pytest.mark.external

EXPECTED = expected()
SENTENCE = EXPECTED["text"]


def without_punctuation(text: str) -> str:
    return text.replace("。", "").replace("、", "")


async def test_v2_progressive_segments_spell_the_sentence(target: Target, sample: bytes) -> None:
    """nict-asr v2, progressive: the determined segments spell the fixture's sentence."""
    headers = mimi_headers(
        "nict-asr",
        "ja",
        options="response_format=v2;progressive=true;temporary=true",
        token=target.token,
    )
    result = await stream_session(target.ws, sample, headers)
    assert result.close_code == 1000
    assert {m["type"] for m in result.messages} == {"asr#nictlvcsr2"}
    assert len({m["session_id"] for m in result.messages}) == 1
    determined = [
        entry["result"]
        for m in result.messages
        if m["status"] == "recog-in-progress"
        for entry in m["response"]
        if entry["determined"]
    ]
    assert without_punctuation("".join(determined)) == SENTENCE
    expected_segments = [s["result"] for s in EXPECTED["nict_v2_determined_segments"]]
    assert determined == expected_segments
    # The production service repeats the last determined segment in recog-finished.
    assert result.finished["response"][0]["result"] == expected_segments[-1]


async def test_asr_format_gives_words_with_pronunciation_and_times(
    target: Target, sample: bytes
) -> None:
    """asr → asr#mimilvcsr: recog-finished lists the fixture's words, pronunciations and times."""
    result = await stream_session(target.ws, sample, mimi_headers("asr", "ja", token=target.token))
    assert result.close_code == 1000
    final = result.finished
    assert final["type"] == "asr#mimilvcsr"
    assert final["response"] == EXPECTED["words"]


async def test_v1_format_gives_morpheme_lines(target: Target, sample: bytes) -> None:
    """nict-asr v1 → asr#nictlvcsr: morpheme lines spell the sentence, then the end markers."""
    result = await stream_session(
        target.ws, sample, mimi_headers("nict-asr", "ja", token=target.token)
    )
    assert result.close_code == 1000
    final = result.finished
    assert final["type"] == "asr#nictlvcsr"
    lines = [entry["result"] for entry in final["response"]]
    assert lines[-2:] == ["|||SENT-START-END||||", "|||UTT-END||||"]
    assert all(line.count("|") == 7 for line in lines)
    assert "".join(line.split("|")[0] for line in lines[:-2]) == SENTENCE


async def test_random_audio_arrives_intact(target: Target) -> None:
    """Three seconds of random bytes reach the engine intact: the stub echoes count and hash."""
    audio = os.urandom(3 * SECOND)
    result = await stream_session(
        target.ws,
        audio,
        mimi_headers("nict-asr", "ja", options="response_format=v2", token=target.token),
        frame_bytes=3001,
    )
    assert result.close_code == 1000
    digest = hashlib.sha256(audio).hexdigest()[:16]
    assert result.finished["response"][0]["result"] == f"bytes={len(audio)} sha256={digest}"


async def test_twenty_concurrent_sessions_all_finish(target: Target, sample: bytes) -> None:
    """Twenty sessions at once all end with recog-finished and close 1000."""
    headers = mimi_headers("nict-asr", "ja", options="response_format=v2", token=target.token)
    results = await asyncio.gather(*(stream_session(target.ws, sample, headers) for _ in range(20)))
    assert [r.close_code for r in results] == [1000] * 20
    texts = {r.finished["response"][0]["result"] for r in results}
    assert {without_punctuation(t) for t in texts} == {SENTENCE}
