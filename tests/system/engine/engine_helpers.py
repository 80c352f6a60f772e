"""Helpers for the engine tests: speech from flite, and a client of the engine protocol."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.common.audio import PcmResampler

EOF_TEXT = '{"eof" : 1}'
TIMEOUT = 10.0
RATE = 16000


def flite_path() -> str:
    """flite's path; a missing flite is an error, not a skip (the project installs it)."""
    path = shutil.which("flite")
    if path is None:
        raise RuntimeError(
            "flite is not installed: the engine tests speak with it "
            "(Debian/Ubuntu: apt-get install flite)"
        )
    return path


def speak(text: str, voice: str, directory: Path) -> bytes:
    """16 kHz mono s16le speech of `text` in flite's `voice` (kal speaks at 8 kHz: resampled)."""
    out = directory / f"{voice}-{abs(hash(text))}.wav"
    subprocess.run(
        [flite_path(), "-voice", voice, "-t", text, "-o", str(out)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    with wave.open(str(out), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        rate, pcm = wav.getframerate(), wav.readframes(wav.getnframes())
    if rate == RATE:
        return pcm
    resampler = PcmResampler(rate, RATE)
    return resampler.feed(pcm) + resampler.flush()


@dataclass
class Transcript:
    replies: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    close_code: int | None = None
    after_final: list[str | bytes] = field(default_factory=list)
    final_latency: float = 0.0

    @property
    def partials(self) -> list[str]:
        return [r["partial"] for r in self.replies if r.get("partial")]

    @property
    def text(self) -> str:
        """Every determined segment's text, the final one included."""
        segments = [r for r in self.replies if "text" in r]
        if self.final is not None:
            segments.append(self.final)
        return " ".join(s["text"] for s in segments if s["text"])


def frames(pcm: bytes, size: int) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


async def stream(
    url: str,
    pcm: bytes,
    frame_bytes: int = 3200,
    pace: float | None = None,
    config: dict[str, Any] | None = None,
) -> Transcript:
    """Send `pcm` in frames (every `pace` s of audio per second if set), then eof."""
    transcript = Transcript()
    # Generous: on a loaded machine decoding falls behind real time.
    async with asyncio.timeout(3 * TIMEOUT + len(pcm) / 2 / RATE * 3):
        async with connect(url, open_timeout=TIMEOUT) as ws:
            await ws.send(json.dumps({"config": config or {"sample_rate": RATE, "words": 1}}))
            loop = asyncio.get_running_loop()
            start = loop.time()
            sent = 0
            for frame in frames(pcm, frame_bytes):
                if pace is not None:
                    await asyncio.sleep(max(0.0, start + sent / 2 / RATE / pace - loop.time()))
                await ws.send(frame)
                sent += len(frame)
                transcript.replies.append(json.loads(await ws.recv()))
            began = loop.time()
            await ws.send(EOF_TEXT)
            transcript.final = json.loads(await ws.recv())
            transcript.final_latency = loop.time() - began
            transcript.after_final, transcript.close_code = await drain(ws)
    return transcript


async def drain(ws: ClientConnection) -> tuple[list[str | bytes], int | None]:
    """Wait for the engine to close: what it sent meanwhile, and its close code."""
    messages: list[str | bytes] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                messages.append(await ws.recv())
    except ConnectionClosed:
        pass
    return messages, ws.close_code


@contextlib.asynccontextmanager
async def at_capacity(url: str, capacity: int) -> AsyncIterator[list[ClientConnection]]:
    """`capacity` sessions held open, the next handshake checked to be refused with HTTP 503;
    what is still in the list is closed on the way out."""
    held = [await connect(url, open_timeout=TIMEOUT) for _ in range(capacity)]
    try:
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, open_timeout=TIMEOUT)
        assert refused.value.response.status_code == 503
        yield held
    finally:
        for ws in held:
            await ws.close()
