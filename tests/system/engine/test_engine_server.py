"""The pocketsphinx engine as a real process, heard through a real websockets client.

The engine starts once per test session (loading the model takes seconds); speech comes
from flite, which must be installed (the tests fail, not skip, without it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterator

import jiwer
import numpy as np
import pytest
import soxr
from websockets.asyncio.client import connect

from tests.support.metrics import metric
from tests.support.processes import Service, free_port, start_service
from tests.support.timing import eventually
from tests.system.engine.engine_helpers import (
    EOF_TEXT,
    TIMEOUT,
    at_capacity,
    drain,
    flite_path,
    speak,
    stream,
)

CAPACITY = 4
SENTENCES = [
    ("rms", "please open the window and turn off the lights in the kitchen"),
    ("slt", "the weather will be sunny tomorrow with a light wind from the north"),
    ("rms", "can you tell me how to get to the nearest train station"),
    ("slt", "we need to buy milk bread and eggs before the store closes"),
]


@pytest.fixture(scope="session")
def engine() -> Iterator[tuple[str, Service]]:
    port = free_port()
    env = {
        "ENGINE_RECOGNIZER": "pocketsphinx",
        "ENGINE_PORT": str(port),
        "ENGINE_CAPACITY": str(CAPACITY),
        "ENGINE_LOG_FORMAT": "json",
    }
    service = start_service("engine", "services.engine", env, wait_port=port, timeout=60)
    try:
        yield f"ws://127.0.0.1:{port}", service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def url(engine: tuple[str, Service]) -> str:
    return engine[0]


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    """(reference text, 16 kHz PCM with a little silence around it) per sentence."""
    try:
        flite_path()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    directory = tmp_path_factory.mktemp("flite")
    silence = bytes(2 * 4000)
    return [(text, silence + speak(text, voice, directory) + silence) for voice, text in SENTENCES]


def _wer(pairs: list[tuple[str, str]]) -> float:
    return float(jiwer.wer([ref for ref, _ in pairs], [hyp for _, hyp in pairs]))


@pytest.mark.slow
async def test_real_time_speech_is_recognised(url: str, speech: list[tuple[str, bytes]]) -> None:
    """Sentences streamed at real time, all at once, come back with a word error rate ≤ 0.20."""
    transcripts = await asyncio.gather(*(stream(url, pcm, pace=1.0) for _, pcm in speech))
    pairs = [(text, t.text) for (text, _), t in zip(speech, transcripts, strict=True)]
    assert _wer(pairs) <= 0.20, pairs
    assert all(t.close_code == 1000 for t in transcripts)


async def test_partials_arrive_before_the_end(url: str, speech: list[tuple[str, bytes]]) -> None:
    """Temporary hypotheses arrive while the speech is still being sent."""
    transcript = await stream(url, speech[0][1], frame_bytes=3200)
    assert len(transcript.partials) >= 3
    assert transcript.partials[0] != transcript.partials[-1]


async def test_small_frames_give_the_same_text(url: str, speech: list[tuple[str, bytes]]) -> None:
    """Speech in 640-byte frames, in odd-sized frames and in one frame gives the same words."""
    pcm = speech[1][1]
    small = await stream(url, pcm, frame_bytes=640)
    odd = await stream(url, pcm, frame_bytes=1001)
    whole = await stream(url, pcm, frame_bytes=len(pcm))
    assert small.text == odd.text == whole.text
    assert _wer([(speech[1][0], small.text)]) <= 0.35


async def test_one_reply_per_frame(url: str, speech: list[tuple[str, bytes]]) -> None:
    """Every binary frame, even an empty one, is answered by exactly one JSON object."""
    pcm = speech[0][1]
    transcript = await stream(url, b"" + pcm, frame_bytes=4000)
    assert len(transcript.replies) == -(-len(pcm) // 4000)
    for reply in transcript.replies:
        assert set(reply) in ({"partial"}, {"text"}, {"text", "result"})
    async with connect(url, open_timeout=TIMEOUT) as ws, asyncio.timeout(TIMEOUT):
        await ws.send(b"")
        assert json.loads(await ws.recv()) == {"partial": ""}


async def test_eof_gives_final_segment_then_close(
    url: str, speech: list[tuple[str, bytes]]
) -> None:
    """The exact eof text is answered by the final segment with timed words, then close 1000."""
    pcm = speech[0][1]
    transcript = await stream(url, pcm[: len(pcm) // 2 * 2 - 8000])  # no trailing silence
    assert transcript.final is not None
    assert transcript.after_final == []
    assert transcript.close_code == 1000
    words = [w for r in [*transcript.replies, transcript.final] for w in r.get("result", [])]
    assert [w["word"] for w in words][-2:] == ["the", "kitchen"]
    assert all(set(w) == {"conf", "end", "start", "word"} for w in words)
    assert all(0 <= w["conf"] <= 1 and w["start"] < w["end"] for w in words)
    assert words[0]["start"] >= 0.2  # 0.25 s of silence precede the speech
    assert words[-1]["end"] <= len(pcm) / 2 / 16000


async def test_eof_without_audio_gives_empty_text(url: str) -> None:
    """An eof before any audio is answered by an empty segment without result, then close."""
    async with connect(url, open_timeout=TIMEOUT) as ws, asyncio.timeout(TIMEOUT):
        await ws.send(EOF_TEXT)
        assert json.loads(await ws.recv()) == {"text": ""}
        assert await drain(ws) == ([], 1000)


@pytest.mark.parametrize("text", ['{"eof": 1}', "hello", '{"command": "recog-break"}'])
async def test_other_text_closes_with_1011(url: str, text: str) -> None:
    """Any text but a config or the exact eof bytes ends the session with a bare close 1011."""
    async with connect(url, open_timeout=TIMEOUT) as ws, asyncio.timeout(TIMEOUT):
        await ws.send(bytes(3200))
        await ws.recv()
        await ws.send(text)
        assert await drain(ws) == ([], 1011)


async def test_reset_gives_a_segment_and_keeps_the_connection(
    url: str, speech: list[tuple[str, bytes]]
) -> None:
    """`{"reset" : 1}` answers the words so far and the session goes on, times continuing."""
    pcm = speech[0][1]
    async with connect(url, open_timeout=TIMEOUT) as ws, asyncio.timeout(3 * TIMEOUT):
        for _ in range(2):
            for i in range(0, len(pcm), 16000):
                await ws.send(pcm[i : i + 16000])
                await ws.recv()
            await ws.send('{"reset" : 1}')
            segment = json.loads(await ws.recv())
            assert segment["text"].endswith("kitchen")
        assert segment["result"][0]["start"] > len(pcm) / 2 / 16000
        await ws.send(EOF_TEXT)
        assert json.loads(await ws.recv()) == {"text": ""}
        assert await drain(ws) == ([], 1000)


async def test_later_config_is_ignored(url: str) -> None:
    """A config after the first audio gets no reply and changes nothing; `model` never loads."""
    async with connect(url, open_timeout=TIMEOUT) as ws, asyncio.timeout(TIMEOUT):
        await ws.send(json.dumps({"config": {"model": "/nonexistent", "words": 1}}))
        await ws.send(bytes(3200))
        assert json.loads(await ws.recv()) == {"partial": ""}
        await ws.send(json.dumps({"config": {"sample_rate": 8000, "words": 0}}))
        await ws.send(bytes(3200))
        assert json.loads(await ws.recv()) == {"partial": ""}
        await ws.send(EOF_TEXT)
        assert json.loads(await ws.recv()) == {"text": ""}
        assert await drain(ws) == ([], 1000)


async def test_other_sample_rates_are_resampled(url: str, speech: list[tuple[str, bytes]]) -> None:
    """48 kHz audio announced in the config is recognised as well, timed in its own seconds."""
    text, pcm = speech[2]
    samples = np.frombuffer(pcm, dtype="<i2")
    wide = soxr.resample(samples, 16000, 48000).astype("<i2").tobytes()
    transcript = await stream(url, wide, frame_bytes=9600, config={"sample_rate": 48000})
    assert _wer([(text, transcript.text)]) <= 0.25
    words = [w for r in [*transcript.replies, transcript.final] if r for w in r.get("result", [])]
    assert 0.2 <= words[0]["start"] < words[-1]["end"] <= len(wide) / 2 / 48000


async def test_without_words_segments_carry_only_text(
    url: str, speech: list[tuple[str, bytes]]
) -> None:
    """With `words: 0` in the config, segments are `{"text": …}` only, as vosk-server's."""
    transcript = await stream(url, speech[0][1], config={"sample_rate": 16000, "words": 0})
    assert transcript.final is not None
    assert set(transcript.final) == {"text"}
    assert transcript.text


async def test_sessions_beyond_capacity_are_refused_with_503(url: str) -> None:
    """With every slot taken, a handshake gets HTTP 503; a slot frees when a session ends."""
    async with asyncio.timeout(TIMEOUT):
        async with at_capacity(url, CAPACITY) as held:
            await held.pop().close()
            async with connect(url, open_timeout=TIMEOUT) as ws:
                await ws.send(EOF_TEXT)
                assert json.loads(await ws.recv()) == {"text": ""}


def test_model_loads_before_the_port_opens(engine: tuple[str, Service]) -> None:
    """The engine logs the loaded model before it listens, and a summary line per session."""
    lines = [json.loads(line) for line in engine[1].log_text().splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    assert messages.index("model loaded") < messages.index("listening")
    summaries = [line for line in lines if line.get("summary")]
    assert summaries
    assert {"outcome", "audio_seconds", "real_time_factor", "session_id"} <= set(summaries[0])


def _metric(url: str, name: str, **labels: str) -> Awaitable[float]:
    return metric(url.replace("ws://", "http://"), name, **labels)


async def test_metrics_count_sessions_audio_and_decoding(
    url: str, speech: list[tuple[str, bytes]]
) -> None:
    """GET /metrics on the engine's port counts a finished session, its audio and decode time."""
    before = await _metric(url, "kikimimi_engine_sessions_total", outcome="ok")
    audio_before = await _metric(url, "kikimimi_engine_audio_seconds_total")
    _, pcm = speech[0]
    transcript = await stream(url, pcm)
    assert transcript.final is not None
    # The engine counts a session once its connection is closed, just after the client sees it.

    async def counted() -> bool:
        return await _metric(url, "kikimimi_engine_sessions_total", outcome="ok") == before + 1

    await eventually(counted, within=10, what="the session was not counted")
    audio_after = await _metric(url, "kikimimi_engine_audio_seconds_total")
    assert audio_after - audio_before == pytest.approx(len(pcm) / 32000, abs=0.01)
    assert await _metric(url, "kikimimi_engine_decode_seconds_total") > 0
