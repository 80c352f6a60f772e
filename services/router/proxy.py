"""One session through the router: start on a backend, relay, fail over without loss.

The router keeps the session's audio (bounded) and what the client has been sent. When
the backend fails with a retryable error mid-session, the audio so far is replayed to
another backend of the same pool, and `ResultFilter` passes on only the results the client
has not seen (see failover.py and docs/routing.md for the limits with real engines).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from services.common import grpc_util
from services.common.pb import recognizer_pb2 as pb
from services.router.backends import Backend, BackendPool
from services.router.errors import (
    RETRYABLE_AT_START,
    RETRYABLE_MID_SESSION,
    BackendFailed,
    NoBackend,
)
from services.router.failover import AudioLog, ResultFilter

log = logging.getLogger(__name__)

Call = grpc.aio.StreamStreamCall[pb.RecognizeRequest, pb.RecognizeResponse]


@dataclass(frozen=True)
class ProxySettings:
    accept_timeout: float
    start_attempts: int
    max_failovers: int
    buffer_bytes: int
    deadline: float


class ProxySession:
    def __init__(
        self,
        start: pb.Start,
        pool: BackendPool,
        settings: ProxySettings,
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        self.start = start
        self.pool = pool
        self.settings = settings
        self.metadata = metadata
        self.audio = AudioLog(settings.buffer_bytes)
        self.results = ResultFilter(start.language)
        # Sees every request the client sends after start (the shadow's feed); never blocks.
        self.mirror: Callable[[pb.RecognizeRequest], None] | None = None
        self.client_ended = False
        self.backend: Backend | None = None
        self.call: Call | None = None
        self.tried: set[str] = set()
        self.failovers = 0
        self.retries = 0
        self.accepted_by = ""
        self.used: list[str] = []  # addresses of the backends that accepted, in order
        self._write_lock = asyncio.Lock()

    # -- start ------------------------------------------------------------------------
    async def _open(self, backend: Backend) -> tuple[Call, pb.Accepted]:
        """Open a call on `backend`, send start, wait for accepted; raises BackendFailed."""
        # grpc-stubs (1.53) does not know that a stream call may start without an iterator.
        call: Call = backend.stub.Recognize(  # type: ignore[call-arg]
            metadata=self.metadata, timeout=self.settings.deadline
        )
        try:
            await call.write(pb.RecognizeRequest(start=self.start))
            reply = await asyncio.wait_for(call.read(), self.settings.accept_timeout)
        except TimeoutError:
            call.cancel()
            raise BackendFailed(
                grpc.StatusCode.UNAVAILABLE,
                f"{backend.address} did not accept within {self.settings.accept_timeout:g} s",
            ) from None
        except grpc.aio.AioRpcError as exc:
            raise BackendFailed.of_call(exc.code(), exc.details()) from exc
        except BaseException:  # cancelled: the backend must not keep a session for nobody
            call.cancel()
            raise
        if reply is grpc_util.EOF:
            await self._raise_call_status(call)
        assert isinstance(reply, pb.RecognizeResponse)
        if reply.WhichOneof("response") != "accepted":
            call.cancel()
            raise BackendFailed(grpc.StatusCode.INTERNAL, "backend did not start with accepted")
        return call, reply.accepted

    @staticmethod
    async def _raise_call_status(call: Call) -> None:
        code = await call.code()
        if code == grpc.StatusCode.OK:
            raise BackendFailed(grpc.StatusCode.INTERNAL, "backend ended the session early")
        raise BackendFailed.of_call(code, await call.details())

    async def connect(self, retryable: frozenset[grpc.StatusCode]) -> pb.Accepted:
        """Put the session on the least loaded healthy backend, trying others on failure."""
        last: BackendFailed | None = None
        for _ in range(self.settings.start_attempts):
            backend = self.pool.pick(exclude=frozenset(self.tried))
            if backend is None or (backend.address in self.tried and last is not None):
                break
            self.tried.add(backend.address)
            backend.outstanding += 1
            try:
                call, accepted = await self._open(backend)
            except BaseException as exc:
                # Every way out gives the slot back, cancellation included (the endpoint's
                # accept timeout fires while a backend is still being tried).
                backend.outstanding -= 1
                if not isinstance(exc, BackendFailed):
                    raise
                log.warning(
                    "backend %s refused the session: %s",
                    backend.address,
                    exc,
                    extra={"backend": backend.address, "code": exc.status.name},
                )
                if exc.status not in retryable:
                    raise
                last = exc
                self.retries += 1
                continue
            self.backend, self.call, self.accepted_by = backend, call, accepted.backend
            self.used.append(backend.address)
            return accepted
        if last is not None:
            raise NoBackend(f"no backend of pool {self.pool.name} could take the session: {last}")
        raise NoBackend(f"no healthy backend in pool {self.pool.name}")

    def _release_backend(self) -> None:
        if self.backend is not None:
            self.backend.outstanding -= 1
            self.backend = None

    # -- relay ------------------------------------------------------------------------
    async def pump_client(self, requests: AsyncIterator[pb.RecognizeRequest]) -> None:
        """Forward the client's audio and end to whichever backend is current, logging it."""
        async for request in requests:
            kind = request.WhichOneof("request")
            if self.mirror is not None and kind in ("audio", "end"):
                self.mirror(request)
            async with self._write_lock:
                if kind == "audio":
                    self.audio.add(request.audio)
                elif kind == "end":
                    self.client_ended = True
                else:
                    continue  # a second start: the backend would refuse it; drop it here
                await self._write_current(request)
            if kind == "end":
                return

    async def _write_current(self, request: pb.RecognizeRequest) -> None:
        if self.call is None:
            return
        try:
            await self.call.write(request)
            if request.WhichOneof("request") == "end":
                await self.call.done_writing()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            pass  # the read side sees the failure and fails over, replaying this frame too

    async def _failover(self, error: BackendFailed) -> None:
        if self.audio.overflowed or self.failovers >= self.settings.max_failovers:
            raise error
        self.failovers += 1
        failed = self.backend.address if self.backend else "?"
        log.warning(
            "failing over from %s: %s",
            failed,
            error,
            extra={"backend": failed, "code": error.status.name, "failover": self.failovers},
        )
        async with self._write_lock:
            self._release_backend()
            if self.call is not None:
                self.call.cancel()
            self.call = None
            try:
                await self.connect(RETRYABLE_AT_START)
            except BackendFailed:
                raise error from None
            except NoBackend as exc:
                raise BackendFailed(error.status, f"{error}; failover found {exc}") from None
            self.results.failover()
            log.info(
                "replaying %d bytes of audio to %s",
                self.audio.size,
                self.used[-1],
                extra={"backend": self.used[-1], "failover": self.failovers},
            )
            for chunk in self.audio.chunks:
                await self._write_current(pb.RecognizeRequest(audio=chunk))
            if self.client_ended:
                await self._write_current(pb.RecognizeRequest(end=pb.End()))

    async def relay(self) -> AsyncIterator[pb.RecognizeResponse]:
        """Yield the backend's results, failing over on retryable errors; ends after finished."""
        while True:
            assert self.call is not None
            try:
                reply = await self.call.read()
                if reply is grpc_util.EOF:
                    await self._raise_call_status(self.call)
            except grpc.aio.AioRpcError as exc:
                error = BackendFailed.of_call(exc.code(), exc.details())
                if error.status not in RETRYABLE_MID_SESSION:
                    raise error from None
                await self._failover(error)
                continue
            except BackendFailed as error:
                if error.status not in RETRYABLE_MID_SESSION:
                    raise
                await self._failover(error)
                continue
            assert isinstance(reply, pb.RecognizeResponse)
            passed = self.results.feed(reply)
            if passed is None:
                continue
            yield passed
            if passed.HasField("finished"):
                return

    def close(self) -> None:
        """Give the backend's slot back and cancel its call (no waiting: see server.py)."""
        self._release_backend()
        if self.call is not None:
            self.call.cancel()
