"""One session over one checked-out engine connection.

Audio from the router is forwarded to the engine as it comes (whole samples, resampled to
the engine's rate) by a forwarding task; the session's own task reads the engine's replies,
translates them and hands them to `emit`. The engine owes one reply per audio frame and one
for the eof. An engine that owes replies and has answered nothing for the reply timeout is
stuck; one that answers, however far behind (all audio sent at once, a busy engine), is not. The
forwarding task is always cancelled and awaited before `run()` returns or raises; the
caller releases the lease.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from services.common.audio import PcmResampler
from services.common.engine_messages import EOF_MESSAGE, config_message
from services.common.pb import recognizer_pb2 as pb
from services.intermediate.engine_protocol import EngineTranslator
from services.intermediate.errors import BadStart, Draining, EngineLost, EngineStuck

# How often a session with nothing owed looks up from waiting (nothing to time out).
_IDLE_WAKE_SECONDS = 5.0

# Engine replies read ahead of the session at most (one is owed per audio frame).
_REPLY_QUEUE = 16
_WAKE = object()

Emit = Callable[[pb.RecognizeResponse], Awaitable[None]]


class EngineSession:
    def __init__(
        self,
        conn: ClientConnection,
        start: pb.Start,
        engine_sample_rate: int,
        reply_timeout: float,
        drain_expired: asyncio.Event,
    ) -> None:
        self.conn = conn
        self.engine_sample_rate = engine_sample_rate
        self.reply_timeout = reply_timeout
        self.drain_expired = drain_expired
        self.translator = EngineTranslator(start.language)
        self.resampler = PcmResampler(start.audio.sample_rate_hz, engine_sample_rate)
        self.audio_bytes = 0
        self._owed: deque[float] = deque()  # send times of messages not yet answered
        self._last_reply = time.monotonic()
        self._eof_sent = False
        self.finished = False
        # Engine replies (or the connection's end, or a wake-up) for `_reply`.
        self._replies: asyncio.Queue[str | bytes | ConnectionClosed | object] = asyncio.Queue(
            _REPLY_QUEUE
        )

    @property
    def audio_seconds(self) -> float:
        return self.audio_bytes / (2 * self.resampler.in_rate)

    async def _send(self, message: str | bytes) -> None:
        self._owed.append(time.monotonic())
        try:
            await self.conn.send(message)
        except ConnectionClosed as exc:
            raise EngineLost(f"engine connection closed while sending: {exc}") from exc

    async def _forward(self, requests: AsyncIterator[pb.RecognizeRequest]) -> None:
        try:
            await self.conn.send(config_message(self.engine_sample_rate))
        except ConnectionClosed as exc:
            raise EngineLost(f"engine connection closed before config: {exc}") from exc
        async for request in requests:
            kind = request.WhichOneof("request")
            if kind == "audio":
                self.audio_bytes += len(request.audio)
                data = self.resampler.feed(request.audio)
                if data:
                    await self._send(data)
            elif kind == "end":
                break
            else:
                raise BadStart("a session has exactly one start, first")
        tail = self.resampler.flush()
        if tail:
            await self._send(tail)
        self._eof_sent = True  # before the send: its reply may come back at once
        await self._send(EOF_MESSAGE)

    def _wait_timeout(self) -> float:
        if not self._owed:
            return _IDLE_WAKE_SECONDS
        waiting_since = max(self._owed[0], self._last_reply)
        return max(0.0, waiting_since + self.reply_timeout - time.monotonic())

    async def _read_engine(self) -> None:
        """Hand each engine reply, then the connection's end, to `_reply`, in order.

        One reader task per session: a task and an `asyncio.wait` per reply cost the relay
        more CPU than the reply itself. The queue is bounded, so a consumer that does not
        keep up stops this reader and, through the socket, the engine (backpressure).
        """
        try:
            while True:
                await self._replies.put(await self.conn.recv())
        except ConnectionClosed as exc:
            await self._replies.put(exc)

    def _wake(self, _: object = None) -> None:
        """Make a waiting `_reply` look at the forwarder and the drain deadline."""
        if self._replies.empty():  # otherwise `_reply` is about to look anyway
            self._replies.put_nowait(_WAKE)

    async def _reply(self, forward: asyncio.Task[None]) -> str | bytes:
        """The engine's next reply, failing on a stuck engine, a failed forward or drain expiry."""
        while True:
            if self.drain_expired.is_set():
                raise Draining("the intermediate's drain deadline passed")
            if forward.done() and forward.exception() is not None:
                raise forward.exception()  # type: ignore[misc]
            try:
                async with asyncio.timeout(self._wait_timeout()):
                    item = await self._replies.get()
            except TimeoutError:
                if self._owed and self._wait_timeout() <= 0:
                    raise EngineStuck(
                        f"engine did not answer within {self.reply_timeout:g} s"
                    ) from None
                continue
            if isinstance(item, str | bytes):
                self._last_reply = time.monotonic()
                return item
            if isinstance(item, ConnectionClosed):
                raise EngineLost(f"engine closed the session: {item}") from item
            # _WAKE: look at the forwarder and the drain deadline again.

    async def run(self, requests: AsyncIterator[pb.RecognizeRequest], emit: Emit) -> None:
        """Emit partials and segments as the engine answers, then one finished."""
        forward = asyncio.create_task(self._forward(requests), name="forward-audio")
        reader = asyncio.create_task(self._read_engine(), name="read-engine")
        expiry = asyncio.create_task(self.drain_expired.wait(), name="drain-expired")
        forward.add_done_callback(self._wake)
        expiry.add_done_callback(self._wake)
        last_partial = ""
        try:
            while True:
                raw = await self._reply(forward)
                if self._owed:
                    self._owed.popleft()
                response = self.translator.feed(raw)
                if response.HasField("partial"):
                    if response.partial.text != last_partial:
                        last_partial = response.partial.text
                        await emit(response)
                    continue
                last_partial = ""
                final = self._eof_sent and not self._owed
                if response.segment.text or response.segment.words or final:
                    await emit(response)
                if final:
                    self.finished = True  # handed to gRPC: the session has succeeded
                    await emit(self.translator.finished())
                    return
        finally:
            expiry.remove_done_callback(self._wake)
            for task in (forward, reader, expiry):
                task.cancel()  # recv() is safe to cancel: no message is lost
            await asyncio.gather(forward, reader, expiry, return_exceptions=True)
