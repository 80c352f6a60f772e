"""Real speech through all tiers, recognised by the Whisper engine (not the stub).

client → endpoint → router → intermediate → Whisper engine (one per language), all real
processes. Japanese: the real fixture (production's recording) and Open JTalk's Mei voice;
English: flite's slt, awb and kal voices. The speech comes from tests/support/speech.py;
thresholds are those of issue 12 (CER ≤ 0.15, WER ≤ 0.2). Few sessions, run at once where
they can be: each costs the two cores seconds of decoding.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import speech
from tests.support.audio import FIXTURES
from tests.support.client import SessionResult, mimi_headers, stream_session
from tests.support.stack import Stack
from tests.system.conftest import Target

pytestmark = pytest.mark.slow

EXPECTED = json.loads((FIXTURES / "ja-chotto-osoi-chushoku.expected.json").read_text("utf-8"))
REALTIME = 32000  # bytes per second of 16 kHz s16le
WITHIN = 150.0  # seconds a session may take on a loaded 2-core machine
GAP = speech.silence(1.0)  # between sentences: the VAD ends an utterance after 0.5 s


@pytest.fixture(scope="module")
def whisper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with Stack(tmp_path_factory.mktemp("whisper")) as stack:
        ja = stack.intermediate("intermediate-ja", [stack.whisper("ja")], engine_capacity=4)
        en = stack.intermediate("intermediate-en", [stack.whisper("en")], engine_capacity=4)
        router = stack.router({"ja": [ja], "en": [en]})
        endpoint = stack.endpoint(router)
        yield Target(f"http://127.0.0.1:{endpoint.ports['http']}")


def entries(result: SessionResult, determined: bool) -> list[dict[str, Any]]:
    return [
        entry
        for m in result.messages
        if m["status"] == "recog-in-progress"
        for entry in m["response"]
        if entry["determined"] is determined
    ]


def spoken(sentences: tuple[str, ...], say: Any) -> bytes:
    return GAP + b"".join(say(s) + GAP for s in sentences)


async def test_fixture_streams_back_with_temporaries_then_one_final(
    whisper: Target, sample: bytes
) -> None:
    """The issue's done-when: the fixture in real time, v2 progressive + temporary: CER ≤ 0.15,
    temporary hypotheses before the first determined segment, one recog-finished, close 1000;
    v1 of the same audio in 65,536-byte frames: morpheme lines with readings, base forms
    and POS spelling the same text."""
    v2 = "response_format=v2;progressive=true;temporary=true;temporary_interval=500"
    live, v1 = await asyncio.gather(
        stream_session(
            whisper.ws,
            sample,
            mimi_headers("nict-asr", "ja", options=v2),
            realtime_bytes_per_second=REALTIME,
            within=WITHIN,
        ),
        stream_session(
            whisper.ws,
            sample,
            mimi_headers("nict-asr", "ja", options="response_format=v1"),
            frame_bytes=65536,
            within=WITHIN,
        ),
    )
    assert live.close_code == 1000, live.messages
    assert live.finished["type"] == "asr#nictlvcsr2"
    determined = entries(live, determined=True)
    text = "".join(e["result"] for e in determined)
    assert speech.cer(EXPECTED["text"], text) <= 0.15, text
    first_determined = next(
        i for i, m in enumerate(live.messages) if m["response"][0]["determined"]
    )
    assert any(not m["response"][0]["determined"] for m in live.messages[:first_determined])
    assert live.finished["response"] == [determined[-1]]

    assert v1.close_code == 1000, v1.messages
    lines = [e["result"].split("|") for e in v1.finished["response"]]
    assert [line[3] for line in lines[-2:]] == ["SENT-START-END", "UTT-END"]
    morphemes = lines[:-2]
    assert all(len(m) == 8 and m[1] and m[2] and m[3] for m in morphemes), morphemes
    assert any(m[2] != m[0] for m in morphemes), "some base form differs from its surface"
    assert speech.japanese_characters("".join(m[0] for m in morphemes)) == (
        speech.japanese_characters(text)
    ), "the same text in 2,048-byte (real-time) and 65,536-byte frames"


async def test_japanese_tts_segments_concatenate_to_the_final(whisper: Target) -> None:
    """Open JTalk's sentences in real time, asr format: CER ≤ 0.15; a determined segment per
    sentence or so, whose words, in order, are the words of recog-finished."""
    audio = spoken(speech.JAPANESE_SENTENCES, speech.japanese)
    result = await stream_session(
        whisper.ws,
        audio,
        mimi_headers("asr", "ja"),
        realtime_bytes_per_second=REALTIME,
        within=WITHIN,
    )
    assert result.close_code == 1000, result.messages
    segments = [m["response"] for m in result.messages[:-1]]
    assert len(segments) >= 2, "sentences a second apart are determined one by one"
    final = result.finished["response"]
    assert [w for segment in segments for w in segment] == final
    assert all(w["pronunciation"] for w in final), "katakana pronunciations"
    heard = "".join(w["result"] for w in final)
    assert speech.cer("".join(speech.JAPANESE_SENTENCES), heard) <= 0.15, heard


async def test_english_voices_are_recognised_whatever_the_frame_size(whisper: Target) -> None:
    """flite's slt, awb and kal: WER ≤ 0.2 each; slt's text is the same in 2,048-byte and
    65,536-byte frames."""
    reference = " ".join(speech.ENGLISH_SENTENCES)
    audio = {
        v: spoken(speech.ENGLISH_SENTENCES, lambda s, v=v: speech.english(s, v))
        for v in speech.ENGLISH_VOICES
    }
    headers = mimi_headers("nict-asr", "en", options="response_format=v2")
    sessions = [(v, 65536) for v in speech.ENGLISH_VOICES] + [("slt", 2048)]
    results = await asyncio.gather(
        *(
            stream_session(whisper.ws, audio[v], headers, frame_bytes=size, within=WITHIN)
            for v, size in sessions
        )
    )
    texts = {}
    for (voice, size), result in zip(sessions, results, strict=True):
        assert result.close_code == 1000, result.messages
        texts[voice, size] = result.finished["response"][0]["result"]
    for voice in speech.ENGLISH_VOICES:
        assert speech.wer(reference, texts[voice, 65536]) <= 0.2, (voice, texts[voice, 65536])
    assert texts["slt", 2048] == texts["slt", 65536]
