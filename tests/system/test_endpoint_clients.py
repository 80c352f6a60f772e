"""The three published mimi clients' wire habits, and every audio format, end to end."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import json
import os
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import soundfile as sf
from websockets.asyncio.client import connect

from services.endpoint.audio import AudioNormaliser
from services.endpoint.handshake import AudioSpec
from tests.support.audio import expected
from tests.support.client import RECOG_BREAK, SessionResult, mimi_headers, stream_session
from tests.system.conftest import Target

EXPECTED = expected()
SEGMENTS = [s["result"] for s in EXPECTED["nict_v2_determined_segments"]]


def echo(pcm: bytes) -> str:
    """What engine_stub says for exactly this audio (docs/engine_stub.md, byte mode)."""
    return f"bytes={len(pcm)} sha256={hashlib.sha256(pcm).hexdigest()[:16]}"


def echoed(result: SessionResult) -> str:
    """What engine_stub echoed for the whole session's audio."""
    text: str = result.finished["response"][0]["result"]
    return text


def determined(result: SessionResult) -> list[str]:
    return [
        e["result"]
        for m in result.messages
        if m["status"] == "recog-in-progress"
        for e in m["response"]
        if e["determined"]
    ]


async def test_browser_query_string_only(target: Target, sample: bytes) -> None:
    """mimiio.js: query string only, empty access-token, Origin, 16 KiB frames; server closes."""
    query = urlencode(
        {
            "process": "nict-asr",
            "input-language": "ja",
            "content-type": "audio/x-pcm;bit=16;rate=16000;channels=1",
            "nict-asr-options": "response_format=v2;progressive=true;temporary=true",
            "access-token": target.token,
        }
    )
    messages: list[dict[str, Any]] = []
    async with connect(
        f"{target.ws}?{query}",
        additional_headers={"Origin": "https://app.example"},
        open_timeout=10,
        compression="deflate",
    ) as ws:
        for offset in range(0, len(sample), 16384):
            await ws.send(sample[offset : offset + 16384])
        await ws.send(RECOG_BREAK)
        async with asyncio.timeout(60):
            async for message in ws:  # the page never closes: the server must
                messages.append(json.loads(message))
        assert ws.close_code == 1000
    assert messages[-1]["status"] == "recog-finished"
    assert messages[-1]["response"][0]["result"] == SEGMENTS[-1]


async def test_python_sample_style(target: Target, sample: bytes) -> None:
    """asr.py: headers, options True/True capitalised, 2,048-byte frames: the segments arrive."""
    headers = mimi_headers(
        options="response_format=v2;progressive=True;temporary=True", token=target.token
    )
    result = await stream_session(target.ws, sample, headers, frame_bytes=2048)
    assert result.close_code == 1000
    assert determined(result) == SEGMENTS
    assert result.finished["type"] == "asr#nictlvcsr2"


async def test_libmimiio_style(target: Target, sample: bytes) -> None:
    """libmimiio: X-Mimi-Content-Type, an extra x-mimi-lid-options, process asr; close 1000."""
    headers = {
        "x-mimi-process": "asr",
        "x-mimi-input-language": "ja",
        "X-Mimi-Content-Type": "audio/x-pcm;bit=16;rate=16000;channels=1",
        "x-mimi-lid-options": "lid=auto",
    }
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    result = await stream_session(target.ws, sample, headers, frame_bytes=2048)
    assert result.close_code == 1000
    assert result.finished["type"] == "asr#mimilvcsr"
    assert result.finished["response"] == EXPECTED["words"]


async def test_query_only_gives_the_sentence_in_v1(target: Target, sample: bytes) -> None:
    """With only a query string, v1 morpheme lines spell the fixture's sentence."""
    query = urlencode({"process": "nict-asr", "input-language": "ja", "access-token": ""})
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    result = await stream_session(f"{target.ws}?{query}", sample, headers)
    lines = [e["result"] for e in result.finished["response"]]
    assert "".join(line.split("|")[0] for line in lines[:-2]) == EXPECTED["text"]


def tone(freq: float, rate: int, seconds: float, channels: int) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    mono = (np.sin(2 * np.pi * freq * t) * 12000).astype("<i2")
    return np.repeat(mono[:, None], channels, axis=1).astype("<i2").tobytes()


async def normalised(spec: AudioSpec, frames: list[bytes]) -> bytes:
    """What the endpoint forwards for these frames (WebSocket keeps frame boundaries)."""
    normaliser = AudioNormaliser(spec)
    out = bytearray()

    async def send(pcm: bytes) -> None:
        out.extend(pcm)

    try:
        for frame in frames:
            await normaliser.feed(frame, send)
        await normaliser.finish(send)
    finally:
        await normaliser.aclose()
    return bytes(out)


async def test_44k_stereo_reaches_the_engine_as_16k_mono(target: Target) -> None:
    """44.1 kHz stereo PCM in odd-sized frames reaches the engine as its 16 kHz mono version."""
    audio = tone(440, 44100, 2.0, 2)
    frames = [audio[i : i + 4001] for i in range(0, len(audio), 4001)]
    spec = AudioSpec("pcm", 44100, 2)
    expected = await normalised(spec, frames)
    assert abs(len(expected) - 2 * 32000) <= 64
    headers = mimi_headers(
        content_type="audio/x-pcm;bit=16;rate=44100;channels=2",
        options="response_format=v2",
        token=target.token,
    )
    result = await stream_session(target.ws, audio, headers, frame_bytes=4001)
    assert echoed(result) == echo(expected)


async def test_8k_mono_is_upsampled(target: Target) -> None:
    """8 kHz mono PCM reaches the engine at 16 kHz: twice the bytes."""
    audio = tone(300, 8000, 1.0, 1)
    expected = await normalised(AudioSpec("pcm", 8000, 1), [audio])
    headers = mimi_headers(
        content_type="audio/x-pcm;bit=16;rate=8000;channels=1",
        options="response_format=v2",
        token=target.token,
    )
    result = await stream_session(target.ws, audio, headers, frame_bytes=len(audio))
    assert echoed(result) == echo(expected)
    assert abs(len(expected) - 32000) <= 32


async def test_flac_reaches_the_engine_as_the_pcm_it_encodes(target: Target) -> None:
    """A FLAC stream in odd-sized frames reaches the engine as exactly the PCM it encodes."""
    pcm = (np.random.default_rng(5).standard_normal(16000 * 2) * 3000).astype("<i2")
    buffer = io.BytesIO()
    sf.write(buffer, pcm, 16000, format="FLAC", subtype="PCM_16")
    headers = {
        **mimi_headers(options="response_format=v2", token=target.token),
        "X-Mimi-Content-Type": "audio/x-flac;bit=16;rate=16000;channels=1",
    }
    result = await stream_session(target.ws, buffer.getvalue(), headers, frame_bytes=1999)
    assert result.close_code == 1000
    assert result.finished["response"][0]["result"] == echo(pcm.tobytes())


async def test_garbage_declared_flac_ends_1003(target: Target) -> None:
    """Bytes that are not FLAC under audio/x-flac end with error invalid_audio and 1003."""
    headers = mimi_headers(content_type="audio/x-flac", token=target.token)
    result = await stream_session(target.ws, os.urandom(20000), headers)
    assert result.close_code == 1003
    assert [e["error"]["code"] for e in result.errors] == ["invalid_audio"]


async def test_post_answers_one_recog_finished(target: Target, sample: bytes) -> None:
    """POST / with the whole audio answers one recog-finished JSON with the sentence."""
    headers = mimi_headers("asr", token=target.token)
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(target.http + "/", headers=headers, content=sample)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "recog-finished"
    assert body["type"] == "asr#mimilvcsr"
    assert body["response"] == EXPECTED["words"]


async def test_post_with_query_parameters_in_v2(target: Target, sample: bytes) -> None:
    """POST /?process=nict-asr&…&nict-asr-options=response_format=v2 answers all the text."""
    query = urlencode(
        {"process": "nict-asr", "input-language": "ja", "nict-asr-options": "response_format=v2"}
    )
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(f"{target.http}/?{query}", headers=headers, content=sample)
    assert response.status_code == 200
    entry = response.json()["response"][0]
    assert entry["result"].rstrip("。") == EXPECTED["text"]
    assert entry["determined"] is True


async def test_temporary_results_respect_the_interval(target: Target) -> None:
    """v2 temporary with real-time audio: determined=false at most every temporary_interval."""
    arrivals: list[float] = []
    loop = asyncio.get_running_loop()

    def on_message(message: dict[str, Any]) -> None:
        if any(not e["determined"] for e in message["response"]):
            arrivals.append(loop.time())

    headers = mimi_headers(
        options="response_format=v2;temporary=true;temporary_interval=500", token=target.token
    )
    result = await stream_session(
        target.ws,
        os.urandom(32000 * 3),
        headers,
        frame_bytes=3200,
        realtime_bytes_per_second=32000,
        on_message=on_message,
    )
    assert result.close_code == 1000
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert 3 <= len(arrivals) <= 7, arrivals
    assert min(gaps) >= 0.4, gaps  # 500 ms on the server's clock, minus network jitter


async def test_post_with_invalid_flac_is_400(target: Target) -> None:
    """POST / with bytes that are not FLAC under audio/x-flac answers 400 invalid_audio."""
    headers = mimi_headers(content_type="audio/x-flac", token=target.token)
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(target.http + "/", headers=headers, content=os.urandom(9000))
    assert response.status_code == 400
    body = response.json()
    assert (body["type"], body["error"]["code"]) == ("error", "invalid_audio")
