"""The Whisper engine as real processes (one per language, as deployed), heard through a real
websockets client: English from three flite voices, and the Japanese fixture.

Kept few on purpose: every test decodes real speech with the real model on a shared 2-core
machine. The protocol details common to both recognisers are tested with pocketsphinx
(test_engine_server.py); here what is Whisper's own: accuracy, temporary hypotheses before
the final, segments, frame-size independence, capacity, and a bad model at start.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import jiwer
import pytest
from websockets.asyncio.client import connect

from tests.support.audio import FIXTURES
from tests.support.processes import ROOT, free_port, start_service
from tests.support.speech import ENGLISH_VOICES, english_words
from tests.system.engine.engine_helpers import (
    EOF_TEXT,
    TIMEOUT,
    Transcript,
    at_capacity,
    drain,
    flite_path,
    speak,
    stream,
)

JA_PCM = (FIXTURES / "ja-chotto-osoi-chushoku.raw").read_bytes()
JA_TEXT = json.loads((FIXTURES / "ja-chotto-osoi-chushoku.expected.json").read_text())["text"]
CAPACITY = 6
SENTENCES = (
    "the meeting has been moved to three thirty on thursday afternoon",
    "please send me the report before the end of the week",
)


def normalise_ja(text: str) -> str:
    """Without spaces and punctuation (the engine already drops Whisper's; this is the check)."""
    return "".join(
        c for c in text if not c.isspace() and not unicodedata.category(c).startswith("P")
    )


def _engine(language: str) -> Iterator[str]:
    port = free_port()
    env = {
        "ENGINE_RECOGNIZER": "whisper",
        "ENGINE_LANGUAGE": language,
        "ENGINE_PORT": str(port),
        "ENGINE_CAPACITY": str(CAPACITY),
        "ENGINE_LOG_FORMAT": "json",
    }
    service = start_service(f"engine-{language}", "services.engine", env, port, timeout=120)
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        service.stop()


@pytest.fixture(scope="module")
def english() -> Iterator[str]:
    yield from _engine("en")


@pytest.fixture(scope="module")
def japanese() -> Iterator[str]:
    yield from _engine("ja")


@pytest.fixture(scope="module")
def flite_speech(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, bytes]]:
    """(voice, reference, 16 kHz PCM with 0.5 s of silence around it) per voice and sentence."""
    try:
        flite_path()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    directory = tmp_path_factory.mktemp("flite")
    silence = bytes(16000)
    return [
        (voice, text, silence + speak(text, voice, directory) + silence)
        for voice in ENGLISH_VOICES
        for text in SENTENCES
    ]


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_english_voices_streamed_at_once_in_real_time(
    english: str, flite_speech: list[tuple[str, str, bytes]]
) -> None:
    """Six sessions in real time on one engine: WER ≤ 0.2 for slt, ≤ 0.3 over all voices."""
    transcripts = await asyncio.gather(
        *(stream(english, pcm, frame_bytes=3200, pace=1.0) for _, _, pcm in flite_speech)
    )
    assert all(t.close_code == 1000 for t in transcripts)
    refs = [text for _, text, _ in flite_speech]
    hyps = [english_words(t.text) for t in transcripts]
    pairs = list(zip(refs, hyps, strict=True))
    slt = [i for i, (voice, _, _) in enumerate(flite_speech) if voice == "slt"]
    assert jiwer.wer([refs[i] for i in slt], [hyps[i] for i in slt]) <= 0.2, pairs
    assert jiwer.wer(refs, hyps) <= 0.3, pairs
    # Words are timed in the session's seconds and carry confidences.
    for transcript, (_, _, pcm) in zip(transcripts, flite_speech, strict=True):
        words = _words(transcript)
        assert words, transcript
        assert 0.2 <= words[0]["start"] < words[-1]["end"] <= len(pcm) / 32000 + 0.05
        assert all(0 <= w["conf"] <= 1 and w["start"] <= w["end"] for w in words)


def _words(transcript: Transcript) -> list[dict[str, object]]:
    replies = [*transcript.replies, transcript.final or {}]
    return [w for r in replies for w in r.get("result", [])]


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_japanese_fixture_in_real_time(japanese: str) -> None:
    """Temporary hypotheses while speaking, then determined segments whose texts, joined
    without spaces, match production's text with a character error rate ≤ 0.15."""
    transcript = await stream(japanese, JA_PCM, frame_bytes=3200, pace=1.0)
    assert transcript.close_code == 1000
    assert len(set(transcript.partials)) >= 2, transcript.replies
    first_partial = next(i for i, r in enumerate(transcript.replies) if r.get("partial"))
    segments = [r for r in transcript.replies if "text" in r]
    first_segment = next((i for i, r in enumerate(transcript.replies) if "text" in r), None)
    assert first_segment is None or first_partial < first_segment
    texts = [s["text"] for s in [*segments, transcript.final] if s and s["text"]]
    assert all(" " not in text for text in texts)  # Japanese is written without spaces
    joined = "".join(texts)
    assert float(jiwer.cer(JA_TEXT, normalise_ja(joined))) <= 0.15, joined
    words = _words(transcript)
    assert "".join(str(w["word"]) for w in words) == joined  # segment text = its words


async def test_frame_size_does_not_change_the_text(japanese: str) -> None:
    """The fixture sent as fast as answered in 2,048-byte and in 65,536-byte frames."""
    small, large = await asyncio.gather(
        stream(japanese, JA_PCM, frame_bytes=2048), stream(japanese, JA_PCM, frame_bytes=65536)
    )
    assert small.text.replace(" ", "") == large.text.replace(" ", "")
    assert small.text
    assert len(small.replies) == -(-len(JA_PCM) // 2048)  # one reply per frame
    assert len(large.replies) == -(-len(JA_PCM) // 65536)


async def test_pings_are_answered_while_finals_decode(japanese: str) -> None:
    """The event loop is free during decodes: a ping sent with eof is answered before the
    final segment, whose three utterances take the decoder far longer than a pong."""
    pcm = (JA_PCM + bytes(32000)) * 3
    async with connect(japanese, open_timeout=TIMEOUT) as ws, asyncio.timeout(6 * TIMEOUT):
        for i in range(0, len(pcm), 65536):
            await ws.send(pcm[i : i + 65536])
            await ws.recv()
        loop = asyncio.get_running_loop()
        await ws.send(EOF_TEXT)
        pong = await ws.ping()
        final_task = asyncio.ensure_future(ws.recv())
        await pong
        ponged = loop.time()
        final = json.loads(await final_task)
        finalled = loop.time()
        assert ponged < finalled
        assert final["text"]


async def test_capacity_is_refused_at_the_handshake(japanese: str) -> None:
    """Beyond ENGINE_CAPACITY sessions, HTTP 503; an eof without audio is an empty segment."""
    async with asyncio.timeout(TIMEOUT):
        async with at_capacity(japanese, CAPACITY) as held:
            ws = held.pop()
            await ws.send(EOF_TEXT)
            assert json.loads(await ws.recv()) == {"text": ""}
            assert await drain(ws) == ([], 1000)


def test_a_bad_model_directory_stops_the_engine_naming_the_setting(tmp_path: Path) -> None:
    env = {
        "ENGINE_RECOGNIZER": "whisper",
        "ENGINE_WHISPER_MODEL_DIR": str(tmp_path / "no-model"),
        "ENGINE_PORT": str(free_port()),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.engine"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "ENGINE_WHISPER_MODEL_DIR" in done.stderr
    assert "not a directory" in done.stderr
