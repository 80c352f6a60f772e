"""One session over one checked-out engine connection.

Audio from the router is forwarded to the engine as it comes (whole samples, resampled to
the engine's rate); every engine reply is translated as it comes. The engine owes one
reply per frame and one for the end: a reply owed for longer than the reply timeout means
a stuck engine. Whatever happens, the caller releases the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from services.common.audio import PcmResampler
from services.common.pb import recognizer_pb2 as pb
from services.intermediate.engine_protocol import EOF_MESSAGE, EngineTranslator, config_message
from services.intermediate.errors import BadStart, Draining, EngineLost, EngineStuck

# How often a session with nothing owed looks up from waiting (drain, sender failure).
_IDLE_WAKE_SECONDS = 1.0


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
        self._owed: deque[float] = deque()  # send times of frames not yet answered
        self._eof_sent = False

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

    async def run(
        self, requests: AsyncIterator[pb.RecognizeRequest]
    ) -> AsyncIterator[pb.RecognizeResponse]:
        """Yield partials and segments as the engine answers, then one finished."""
        forward = asyncio.create_task(self._forward(requests), name="forward-audio")
        expired = asyncio.create_task(self.drain_expired.wait(), name="drain-expired")
        receive: asyncio.Task[str | bytes] | None = None
        last_partial = ""
        try:
            while True:
                if receive is None:
                    receive = asyncio.create_task(self.conn.recv())
                done, _ = await asyncio.wait(
                    {receive, forward, expired},
                    timeout=self._wait_timeout(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if expired in done:
                    raise Draining("the intermediate's drain deadline passed")
                if forward in done and forward.exception() is not None:
                    raise forward.exception()  # type: ignore[misc]
                if receive not in done:
                    if self._owed and self._wait_timeout() <= 0:
                        raise EngineStuck(f"engine did not answer within {self.reply_timeout:g} s")
                    continue
                try:
                    raw = receive.result()
                except ConnectionClosed as exc:
                    raise EngineLost(f"engine closed the session: {exc}") from exc
                receive = None
                if self._owed:
                    self._owed.popleft()
                response = self.translator.feed(raw)
                if response.HasField("partial"):
                    if response.partial.text != last_partial:
                        last_partial = response.partial.text
                        yield response
                    continue
                last_partial = ""
                final = self._eof_sent and not self._owed
                if response.segment.text or response.segment.words or final:
                    yield response
                if final:
                    yield self.translator.finished()
                    return
        finally:
            for task in (forward, expired, receive):
                if task is not None:
                    task.cancel()
            await asyncio.gather(
                *(t for t in (forward, expired, receive) if t is not None), return_exceptions=True
            )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.close(), 1)
