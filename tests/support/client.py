"""A test client that speaks the public protocol as mimi's clients do, over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.common.audio import SAMPLE_RATE

RECOG_BREAK = json.dumps({"command": "recog-break"})
PCM16K = f"audio/x-pcm;bit=16;rate={SAMPLE_RATE};channels=1"
SESSION_TIMEOUT = 60.0


@dataclass
class SessionResult:
    messages: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    # loop.time() when recog-break was sent and when recog-finished arrived (0.0: never).
    break_sent_at: float = 0.0
    finished_at: float = 0.0

    @property
    def final_latency(self) -> float:
        """Seconds from recog-break to recog-finished."""
        assert self.finished_at, "the session did not finish"
        return self.finished_at - self.break_sent_at

    @property
    def finished(self) -> dict[str, Any]:
        finals = [m for m in self.messages if m.get("status") == "recog-finished"]
        assert len(finals) == 1, f"expected exactly one recog-finished, got {self.messages}"
        assert self.messages[-1] is finals[0], "recog-finished must be the last message"
        return finals[0]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == "error"]


def mimi_headers(
    process: str = "nict-asr",
    language: str = "ja",
    content_type: str = PCM16K,
    options: str = "",
    token: str = "",
) -> dict[str, str]:
    headers = {
        "x-mimi-process": process,
        "x-mimi-input-language": language,
        "Content-Type": content_type,
    }
    if options:
        headers["x-mimi-nict-asr-options"] = options
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def stream_session(
    url: str,
    audio: bytes,
    headers: dict[str, str] | None = None,
    frame_bytes: int = 2048,
    realtime_bytes_per_second: int = 0,
    send_break: bool = True,
    within: float = SESSION_TIMEOUT,
    on_message: Callable[[dict[str, Any]], None] | None = None,
) -> SessionResult:
    """Stream `audio`, send recog-break, collect every message until the server closes.

    `on_message` is called with each message as it arrives (to act mid-session).
    """
    result = SessionResult()
    async with connect(
        url, additional_headers=headers or {}, open_timeout=10, close_timeout=5, max_size=2**20
    ) as ws:

        async def send() -> None:
            loop = asyncio.get_running_loop()
            began = loop.time()
            for offset in range(0, len(audio), frame_bytes):
                await ws.send(audio[offset : offset + frame_bytes])
                if realtime_bytes_per_second:
                    due = began + (offset + frame_bytes) / realtime_bytes_per_second
                    await asyncio.sleep(max(0.0, due - loop.time()))
            if send_break:
                result.break_sent_at = loop.time()
                await ws.send(RECOG_BREAK)

        sender = asyncio.create_task(send())
        try:
            async with asyncio.timeout(within):
                async for message in ws:
                    result.messages.append(json.loads(message))
                    if result.messages[-1].get("status") == "recog-finished":
                        result.finished_at = asyncio.get_running_loop().time()
                    if on_message is not None:
                        on_message(result.messages[-1])
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        result.close_code = ws.close_code
        result.close_reason = ws.close_reason or ""
    return result


async def refusal(
    url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Open a WebSocket that should be refused; return (status, JSON body, headers)."""
    try:
        async with connect(url, additional_headers=headers or {}, open_timeout=10):
            pass
    except InvalidStatus as exc:
        response = exc.response
        body = json.loads(response.body or b"{}")
        return response.status_code, body, {k.lower(): v for k, v in response.headers.items()}
    raise AssertionError("the connection was accepted, not refused")


async def exchange(
    url: str,
    frames: list[bytes | str],
    headers: dict[str, str] | None = None,
    within: float = SESSION_TIMEOUT,
) -> SessionResult:
    """Send `frames` as they are (binary or text, nothing added), then collect every message
    until the server closes; for tests of what the server does with odd input."""
    result = SessionResult()
    async with connect(
        url,
        additional_headers=headers or {},
        open_timeout=10,
        close_timeout=5,
        max_size=2**20,
        max_queue=None,
    ) as ws:
        async with asyncio.timeout(within):
            with contextlib.suppress(ConnectionClosed):  # the server may close mid-way
                for frame in frames:
                    await ws.send(frame)
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:  # also what arrived before a close
                    result.messages.append(json.loads(message))
        result.close_code = ws.close_code
        result.close_reason = ws.close_reason or ""
    return result
