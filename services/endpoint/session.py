"""One client session over WebSocket: audio in, mimi JSON out, one clear ending.

Two tasks per session: `_receive` reads the client's frames (audio, `recog-break`) and
forwards normalised audio to the backend — it awaits each write, so a slow backend
slows the reading of the socket instead of growing a buffer; `_send` turns backend
results into mimi messages. The session ends with `recog-finished` and close 1000, or
with one error message and the close code of the error — never silently.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect

from services.common.audio import PCM_BYTES_PER_SECOND
from services.endpoint.audio import MIN_ACTIVITY_BYTES, AudioNormaliser, audio_errors
from services.endpoint.backend import BackendStream
from services.endpoint.errors import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED,
    SessionError,
)
from services.endpoint.formats import FINISHED, ResultFormatter

RECOG_BREAK = {"command": "recog-break"}


class ClientGone(Exception):
    """The client closed the connection (or it broke) before the session ended."""


@dataclass(frozen=True)
class SessionLimits:
    max_frame_bytes: int
    idle_timeout: float
    max_session_seconds: float
    final_timeout: float


@dataclass
class SessionOutcome:
    outcome: str = "ok"
    close_code: int = CLOSE_NORMAL
    error_code: str = ""
    audio_seconds: float = 0.0
    first_result_seconds: float | None = None
    final_after_break_seconds: float | None = None


class WebSocketSession:
    def __init__(
        self,
        ws: WebSocket,
        backend: BackendStream,
        formatter: ResultFormatter,
        normaliser: AudioNormaliser,
        limits: SessionLimits,
        drain_expired: asyncio.Event,
    ) -> None:
        self.ws = ws
        self.backend = backend
        self.formatter = formatter
        self.normaliser = normaliser
        self.limits = limits
        self.drain_expired = drain_expired
        self.began = time.monotonic()
        self.broke_at: float | None = None
        self.broke = asyncio.Event()
        self.forwarded_bytes = 0
        self.result = SessionOutcome()

    # -- client → backend --------------------------------------------------------------
    async def _receive(self) -> None:
        deadline = self.began + self.limits.max_session_seconds
        too_long = SessionError(
            CLOSE_POLICY,
            "session_too_long",
            f"the session exceeded {self.limits.max_session_seconds:g} s",
        )
        idle = SessionError(
            CLOSE_POLICY, "idle_timeout", f"no audio for {self.limits.idle_timeout:g} s"
        )
        # The idle timer restarts only when MIN_ACTIVITY_BYTES more audio went on since it
        # last did: empty or tiny frames keep nobody's engine slot.
        idle_from, active_bytes = self.began, 0
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                raise too_long
            idle_left = idle_from + self.limits.idle_timeout - now
            # Which limit bounds this wait decides the error: a timer may fire a hair before
            # the deadline, so comparing the clock afterwards would misname it.
            idle_bound = self.broke_at is None and idle_left < remaining
            if idle_bound and idle_left <= 0:
                raise idle
            try:
                # asyncio.timeout, not wait_for: wait_for (3.11) wraps every frame's
                # receive in a new Task, a hot path at 10 frames/s per session.
                async with asyncio.timeout(idle_left if idle_bound else remaining):
                    message = await self.ws.receive()
            except TimeoutError:
                raise (idle if idle_bound else too_long) from None
            if message["type"] == "websocket.disconnect":
                raise ClientGone()
            data = message.get("bytes")
            if data is not None:
                await self._audio(data)
            else:
                await self._text(message.get("text") or "")
            if self.forwarded_bytes - active_bytes >= MIN_ACTIVITY_BYTES:
                idle_from, active_bytes = time.monotonic(), self.forwarded_bytes

    async def _audio(self, data: bytes) -> None:
        if self.broke_at is not None:
            raise SessionError(CLOSE_POLICY, "audio_after_break", "audio after recog-break")
        if len(data) > self.limits.max_frame_bytes:
            raise SessionError(
                CLOSE_TOO_BIG,
                "frame_too_large",
                f"a frame of {len(data)} bytes exceeds {self.limits.max_frame_bytes}",
            )
        with audio_errors():
            await self.normaliser.feed(data, self._forward)

    async def _forward(self, pcm: bytes) -> None:
        self.forwarded_bytes += len(pcm)
        await self.backend.send_audio(pcm)

    async def _text(self, text: str) -> None:
        try:
            command = json.loads(text)
        except ValueError:
            command = None
        if command != RECOG_BREAK:
            raise SessionError(
                CLOSE_UNSUPPORTED,
                "bad_command",
                'text frames must be {"command":"recog-break"}; got ' + repr(text[:80]),
            )
        if self.broke_at is not None:
            return  # a repeated recog-break changes nothing
        self.broke_at = time.monotonic()
        self.broke.set()
        with audio_errors():
            await self.normaliser.finish(self._forward)
        await self.backend.end()

    # -- backend → client --------------------------------------------------------------
    async def _send(self) -> None:
        async for reply in self.backend.results():
            now = time.monotonic()
            for message in self.formatter.feed(reply, (now - self.began) * 1000):
                if self.result.first_result_seconds is None:
                    self.result.first_result_seconds = now - self.began
                if message["status"] == FINISHED and self.broke_at is not None:
                    self.result.final_after_break_seconds = now - self.broke_at
                await self.ws.send_text(json.dumps(message, ensure_ascii=False))

    async def _final_deadline(self) -> None:
        """Fail a session whose backend gives no final result long after recog-break."""
        await self.broke.wait()
        await asyncio.sleep(self.limits.final_timeout)
        raise SessionError(
            CLOSE_INTERNAL,
            "backend_timeout",
            f"no final result within {self.limits.final_timeout:g} s of recog-break",
            retryable=True,
        )

    async def _drain_deadline(self) -> None:
        await self.drain_expired.wait()
        raise SessionError(
            CLOSE_GOING_AWAY, "draining", "the server is shutting down; retry", retryable=True
        )

    async def run(self) -> SessionOutcome:
        tasks = [
            asyncio.create_task(self._send(), name="send"),
            asyncio.create_task(self._receive(), name="receive"),
            asyncio.create_task(self._final_deadline(), name="final-deadline"),
            asyncio.create_task(self._drain_deadline(), name="drain-deadline"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            first = next(iter(done))
            error = first.exception()
            if error is None:
                await self._close(CLOSE_NORMAL)
            elif isinstance(error, SessionError):
                await self._fail(error)
            elif isinstance(error, ClientGone | WebSocketDisconnect):
                self.result.outcome = "client_gone"
            else:
                await self._fail(SessionError(CLOSE_INTERNAL, "internal_error", "internal error"))
                raise error
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.backend.cancel()
            await self.normaliser.aclose()
            self.result.audio_seconds = self.forwarded_bytes / PCM_BYTES_PER_SECOND
        return self.result

    async def _fail(self, error: SessionError) -> None:
        self.result.outcome = error.code
        self.result.error_code = error.code
        message = self.formatter.error(error.code, error.message, error.retryable)
        try:
            await self.ws.send_text(json.dumps(message, ensure_ascii=False))
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.result.outcome = "client_gone"
            return
        await self._close(error.close_code)

    async def _close(self, code: int) -> None:
        self.result.close_code = code
        try:
            await self.ws.close(code)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.result.outcome = "client_gone"
