"""One session over one checked-out engine connection.

Audio from the router is forwarded to the engine as it comes (whole samples, resampled to
the engine's rate) by a forwarding task; the session's own task reads the engine's replies,
translates them and hands them to `emit`. The engine owes one reply per audio frame and one
for the eof: a reply owed for longer than the reply timeout means a stuck engine. The
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
from services.common.pb import recognizer_pb2 as pb
from services.intermediate.engine_protocol import EOF_MESSAGE, EngineTranslator, config_message
from services.intermediate.errors import BadStart, Draining, EngineLost, EngineStuck

# How often a session with nothing owed looks up from waiting (nothing to time out).
_IDLE_WAKE_SECONDS = 5.0

Emit = Callable[[pb.RecognizeResponse], Awaitable[None]]


class EngineSession:
    def __init__(
        self,
        conn: ClientConnection,
        start: pb.Start,
        engine_sample_rate: int,
        reply_timeout: float,
        drain_expired: asyncio.Future[None],
    ) -> None:
        self.conn = conn
        self.engine_sample_rate = engine_sample_rate
        self.reply_timeout = reply_timeout
        self.drain_expired = drain_expired
        self.translator = EngineTranslator(start.language)
        self.resampler = PcmResampler(start.audio.sample_rate_hz, engine_sample_rate)
        self.audio_bytes = 0
        self._owed: deque[float] = deque()  # send times of messages not yet answered
        self._eof_sent = False
        self.finished = False

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
        return max(0.0, self._owed[0] + self.reply_timeout - time.monotonic())

    async def _reply(self, forward: asyncio.Task[None]) -> str | bytes:
        """The engine's next reply, failing on a stuck engine, a failed forward or drain expiry."""
        receive = asyncio.ensure_future(self.conn.recv())
        try:
            while True:
                waiting: set[asyncio.Future[object]] = {receive, self.drain_expired}  # type: ignore[arg-type]
                if not forward.done():
                    waiting.add(forward)  # type: ignore[arg-type]
                await asyncio.wait(
                    waiting, timeout=self._wait_timeout(), return_when=asyncio.FIRST_COMPLETED
                )
                if receive.done():
                    try:
                        return receive.result()
                    except ConnectionClosed as exc:
                        raise EngineLost(f"engine closed the session: {exc}") from exc
                if self.drain_expired.done():
                    raise Draining("the intermediate's drain deadline passed")
                if forward.done() and forward.exception() is not None:
                    raise forward.exception()  # type: ignore[misc]
                if self._owed and self._wait_timeout() <= 0:
                    raise EngineStuck(f"engine did not answer within {self.reply_timeout:g} s")
        finally:
            if not receive.done():
                receive.cancel()  # recv() is safe to cancel: no message is lost
                await asyncio.gather(receive, return_exceptions=True)

    async def run(self, requests: AsyncIterator[pb.RecognizeRequest], emit: Emit) -> None:
        """Emit partials and segments as the engine answers, then one finished."""
        forward = asyncio.create_task(self._forward(requests), name="forward-audio")
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
            forward.cancel()
            await asyncio.gather(forward, return_exceptions=True)
