"""Every error after the upgrade: one JSON error message, then the documented close code."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.audio import SECOND
from tests.support.client import RECOG_BREAK, SessionResult, exchange, mimi_headers, stream_session
from tests.support.stack import Stack

# How the tiers behind report a lost engine varies (UNAVAILABLE, or INTERNAL when the
# stream breaks); the client's contract is one error message and 1011 either way.
BACKEND_FAILED = {"backend_unavailable", "internal_error"}


@dataclass(frozen=True)
class Urls:
    ws: str  # idle timeout 1.5 s, sessions at most 4 s


@pytest.fixture(scope="module")
def urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Urls]:
    with Stack(tmp_path_factory.mktemp("stack")) as stack:
        pools = {
            "ja": [stack.intermediate("im-ja", [stack.engine_stub("engine-ja")])],
            # Replies 0.3 s late: a recog-break is answered well after the next frame.
            "slow": [
                stack.intermediate("im-slow", [stack.engine_stub("e-slow", frame_latency_ms=300)])
            ],
            "garbage": [
                stack.intermediate(
                    "im-garbage", [stack.engine_stub("e-garbage", garbage_after_frames=2)]
                )
            ],
            "closing": [
                stack.intermediate(
                    "im-closing", [stack.engine_stub("e-closing", close_after_frames=2)]
                )
            ],
        }
        router = stack.router(pools)
        endpoint = stack.endpoint(router, idle_timeout=1.5, max_session_seconds=4)
        yield Urls(f"ws://127.0.0.1:{endpoint.ports['http']}/")


def single_error(result: SessionResult, code: str | set[str], close_code: int) -> dict[str, Any]:
    """The session ended with exactly one error message, last, then `close_code`."""
    assert result.close_code == close_code, result
    assert len(result.errors) == 1, result.messages
    error = result.messages[-1]
    assert error["type"] == "error"
    assert error["status"] == "error"
    assert error["session_id"]
    assert error["error"]["code"] in ({code} if isinstance(code, str) else code)
    assert error["error"]["message"]
    return error


async def test_frame_over_64k_closes_1009(urls: Urls) -> None:
    """A 65,537-byte audio frame gets error frame_too_large, then close 1009."""
    result = await exchange(urls.ws, [b"\0" * 65537], mimi_headers())
    single_error(result, "frame_too_large", 1009)


async def test_frame_of_exactly_64k_is_fine(urls: Urls) -> None:
    """A frame of exactly 65,536 bytes is audio like any other."""
    result = await stream_session(urls.ws, b"\0" * 65536, mimi_headers(), frame_bytes=65536)
    assert result.close_code == 1000
    assert result.finished


async def test_frame_over_1mib_is_a_bare_1009(urls: Urls) -> None:
    """A frame over 1 MiB is refused by the WebSocket layer itself with 1009."""
    result = await exchange(urls.ws, [b"\0" * (2**20 + 2)], mimi_headers())
    assert result.close_code == 1009


async def test_non_json_text_closes_1003(urls: Urls) -> None:
    """A text frame that is not JSON gets error bad_command, then close 1003."""
    result = await exchange(urls.ws, ["hello"], mimi_headers())
    assert "hello" in single_error(result, "bad_command", 1003)["error"]["message"]


async def test_unknown_command_closes_1003(urls: Urls) -> None:
    """A JSON command other than recog-break gets error bad_command, then close 1003."""
    result = await exchange(urls.ws, [json.dumps({"command": "recog-pause"})], mimi_headers())
    single_error(result, "bad_command", 1003)


async def test_audio_after_recog_break_closes_1008(urls: Urls) -> None:
    """Audio after recog-break gets error audio_after_break, then close 1008."""
    frames: list[bytes | str] = [b"\0" * 3200, RECOG_BREAK, b"\0" * 3200]
    result = await exchange(urls.ws, frames, mimi_headers(language="slow"))
    single_error(result, "audio_after_break", 1008)


async def test_repeated_recog_break_is_harmless(urls: Urls) -> None:
    """A second recog-break changes nothing: the session still finishes with 1000."""
    result = await exchange(urls.ws, [b"\0" * 3200, RECOG_BREAK, RECOG_BREAK], mimi_headers())
    assert result.close_code == 1000
    assert result.finished


async def test_silent_client_closes_1008_after_idle_timeout(urls: Urls) -> None:
    """A client that sends nothing gets error idle_timeout after the idle time, then 1008."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    result = await exchange(urls.ws, [], mimi_headers())
    single_error(result, "idle_timeout", 1008)
    assert 1.4 <= loop.time() - began < 10


async def test_session_over_the_limit_closes_1008(urls: Urls) -> None:
    """A session still streaming after the limit gets error session_too_long, then 1008."""
    audio = b"\0" * (SECOND * 8)
    result = await stream_session(
        urls.ws, audio, mimi_headers(), frame_bytes=3200, realtime_bytes_per_second=SECOND
    )
    single_error(result, "session_too_long", 1008)


async def test_engine_garbage_ends_1011(urls: Urls) -> None:
    """An engine answering garbage mid-session, with no backend to fail over to: 1011."""
    result = await stream_session(urls.ws, os.urandom(SECOND), mimi_headers(language="garbage"))
    single_error(result, BACKEND_FAILED, 1011)


async def test_engine_closing_mid_session_ends_1011(urls: Urls) -> None:
    """An engine closing 1011 mid-session, with no backend to fail over to: 1011."""
    result = await stream_session(urls.ws, os.urandom(SECOND), mimi_headers(language="closing"))
    single_error(result, BACKEND_FAILED, 1011)


async def test_client_vanishing_does_not_disturb_others(urls: Urls) -> None:
    """A client dropping its connection mid-stream leaves a parallel session untouched."""
    audio = os.urandom(SECOND)
    async with connect(urls.ws, additional_headers=mimi_headers(), open_timeout=10) as ws:
        await ws.send(audio[:4000])
        ws.transport.abort()
    result = await stream_session(urls.ws, audio, mimi_headers())
    assert result.close_code == 1000
    assert result.finished


async def test_frames_without_audio_worth_its_name_do_not_keep_a_session(urls: Urls) -> None:
    """Two bytes every 0.3 s (under 10 ms of audio per idle time) do not reset the idle
    timer: the session ends idle_timeout at the idle time, not at its length limit."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with connect(urls.ws, additional_headers=mimi_headers(), open_timeout=10) as ws:

        async def trickle() -> None:
            while True:
                await ws.send(b"\0\0")
                await asyncio.sleep(0.3)

        sender = asyncio.create_task(trickle())
        messages: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(10):
                with contextlib.suppress(ConnectionClosed):
                    async for message in ws:
                        messages.append(json.loads(message))
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    assert [m["error"]["code"] for m in messages if m["type"] == "error"] == ["idle_timeout"]
    assert ws.close_code == 1008
    assert loop.time() - began < 3.5  # the idle time (1.5 s), well before the 4 s limit


async def test_real_audio_in_small_frames_keeps_the_session(urls: Urls) -> None:
    """10 ms frames sent in real time for longer than the idle time finish normally."""
    result = await stream_session(
        urls.ws,
        os.urandom(SECOND * 2),
        mimi_headers(),
        frame_bytes=320,
        realtime_bytes_per_second=SECOND,
    )
    assert result.close_code == 1000
    assert result.finished


def silence_flac(seconds: float) -> bytes:
    """Digital silence at 48 kHz stereo as FLAC: a few bytes per second of audio."""
    buffer = io.BytesIO()
    samples = np.zeros((int(48000 * seconds), 2), np.int16)
    sf.write(buffer, samples, 48000, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


FLAC_48K_STEREO = "audio/x-flac;bit=16;rate=48000;channels=2"


async def test_flac_decoding_past_the_session_length_closes_1008(urls: Urls) -> None:
    """One small frame of FLAC that decodes to more audio than a session may last (4 s
    here) gets error audio_too_long, then 1008 (a decompression bomb, scaled down)."""
    bomb = silence_flac(10)
    assert len(bomb) < 4096
    headers = mimi_headers(content_type=FLAC_48K_STEREO)
    result = await exchange(urls.ws, [bomb, RECOG_BREAK], headers)
    single_error(result, "audio_too_long", 1008)


async def test_post_of_flac_decoding_past_the_session_length_is_413(urls: Urls) -> None:
    http = urls.ws.replace("ws://", "http://")
    headers = mimi_headers(content_type=FLAC_48K_STEREO)
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(http, headers=headers, content=silence_flac(10))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "audio_too_long"
