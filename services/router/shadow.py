"""Shadow traffic: mirror a session to a shadow pool and compare the final texts.

A shadow never touches what the client receives and never slows the primary down: the
primary's audio is *offered* to a bounded queue (never awaited), and a shadow that falls
behind, fails or is slow is dropped and counted as a failure. After the primary finished,
the shadow gets `finish_timeout` seconds to finish too; then the final texts are compared
(match, or mismatch with a word error rate) in the background, counted and logged. The
texts themselves are not logged: they are the client's speech.

`ShadowLauncher` decides which sessions are mirrored (the route's fraction, a cap on
shadows at once) and settles each one in the background once its primary ended.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from dataclasses import dataclass

import grpc

from services.common import grpc_util
from services.common.audio import BYTES_PER_SAMPLE, SAMPLE_RATE
from services.common.pb import recognizer_pb2 as pb
from services.router.backends import BackendPool, BackendRegistry
from services.router.config import Settings
from services.router.metrics import Metrics
from services.router.routes import Route
from services.router.wer import word_error_rate

log = logging.getLogger(__name__)

Call = grpc.aio.StreamStreamCall[pb.RecognizeRequest, pb.RecognizeResponse]


@dataclass(frozen=True)
class ShadowSettings:
    accept_timeout: float
    queue_bytes: int  # audio waiting for the shadow beyond this drops the shadow
    finish_timeout: float  # after the primary finished
    deadline: float


class ShadowSession:
    """One session mirrored to a shadow backend; its failures only ever end the shadow."""

    def __init__(
        self,
        start: pb.Start,
        pool: BackendPool,
        settings: ShadowSettings,
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        self.start = pb.Start()
        self.start.CopyFrom(start)
        self.pool = pool
        self.settings = settings
        self.metadata = metadata
        self.queue: deque[pb.RecognizeRequest] = deque()
        self.queued_bytes = 0
        self.failure = ""  # why the shadow was given up; empty while it is fine
        self.finished: pb.Finished | None = None
        self.backend = ""
        self._more = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cancelled = False

    def begin(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shadow")

    def offer(self, request: pb.RecognizeRequest) -> None:
        """Queue a request of the primary for the shadow; never blocks."""
        if self.failure or self._task is None or self._task.done():
            return
        size = len(request.audio)
        if self.queued_bytes + size > self.settings.queue_bytes:
            self.fail(f"the shadow fell behind by more than {self.settings.queue_bytes} bytes")
            return
        self.queue.append(request)
        self.queued_bytes += size
        self._more.set()

    def fail(self, reason: str) -> None:
        if not self.failure and self.finished is None:
            self.failure = reason
        if self._task is not None and not self._cancelled:
            self._cancelled = True  # once: a second cancel would interrupt its cleanup
            self._task.cancel()
        self.queue.clear()

    async def wait(self, grace: float) -> None:
        """Give the shadow `grace` seconds more to finish, then give it up."""
        if self._task is None:
            return
        _, pending = await asyncio.wait({self._task}, timeout=grace)
        if pending:
            self.fail(f"no final result within {grace:g} s of the primary's")
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        backend = self.pool.pick()
        if backend is None:
            self.failure = f"no healthy backend in shadow pool {self.pool.name}"
            return
        self.backend = backend.address
        backend.outstanding += 1
        # grpc-stubs (1.53) does not know that a stream call may start without an iterator.
        call: Call = backend.stub.Recognize(  # type: ignore[call-arg]
            metadata=self.metadata, timeout=self.settings.deadline
        )
        writer: asyncio.Task[None] | None = None
        try:
            await call.write(pb.RecognizeRequest(start=self.start))
            reply = await asyncio.wait_for(call.read(), self.settings.accept_timeout)
            if not isinstance(reply, pb.RecognizeResponse) or not reply.HasField("accepted"):
                self.failure = "the shadow did not accept the session"
                return
            writer = asyncio.create_task(self._write(call), name="shadow-writer")
            while True:
                reply = await call.read()
                if reply is grpc_util.EOF:
                    self.failure = f"the shadow ended without a final result: {await call.code()}"
                    return
                assert isinstance(reply, pb.RecognizeResponse)
                if reply.HasField("finished"):
                    self.finished = reply.finished
                    return
        except TimeoutError:
            self.failure = f"the shadow did not accept within {self.settings.accept_timeout:g} s"
        except grpc.aio.AioRpcError as exc:
            self.failure = f"the shadow failed: {exc.code().name}: {exc.details()}"
        finally:
            # The bookkeeping before any await: a cancellation landing while this block
            # waits for the writer would skip whatever comes after the wait.
            call.cancel()
            backend.outstanding -= 1
            if writer is not None:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)

    async def _write(self, call: Call) -> None:
        while True:
            await self._more.wait()
            self._more.clear()
            while self.queue:
                request = self.queue.popleft()
                self.queued_bytes -= len(request.audio)
                await call.write(request)
                if request.HasField("end"):
                    await call.done_writing()
                    return


async def settle(
    shadow: ShadowSession,
    primary: pb.Finished | None,
    language: str,
    route: str,
    metrics: Metrics,
) -> None:
    """Wait for the shadow (bounded), compare with the primary's final text, count and log."""
    if primary is None:
        shadow.fail("the primary session did not finish")
        await shadow.wait(0)
        metrics.shadow_sessions.labels(route, "aborted").inc()
        log.info("shadow aborted", extra={"route": route, "shadow_backend": shadow.backend})
        return
    await shadow.wait(shadow.settings.finish_timeout)
    if shadow.finished is None:
        metrics.shadow_sessions.labels(route, "failure").inc()
        log.warning(
            "shadow failed: %s",
            shadow.failure or "no final result",
            extra={"route": route, "shadow_backend": shadow.backend},
        )
        return
    rate, errors, words = await asyncio.to_thread(
        word_error_rate, language, primary.text, shadow.finished.text
    )
    result = "match" if errors == 0 else "mismatch"
    metrics.shadow_sessions.labels(route, result).inc()
    metrics.shadow_word_errors.labels(route).inc(errors)
    metrics.shadow_reference_words.labels(route).inc(words)
    metrics.shadow_wer.labels(route).observe(rate)
    log.info(
        "shadow %s",
        result,
        extra={
            "route": route,
            "shadow_backend": shadow.backend,
            "wer": round(rate, 4),
            "word_errors": errors,
            "reference_words": words,
        },
    )


class ShadowLauncher:
    """Starts the shadows of the sessions a route mirrors, and settles them in the background."""

    def __init__(self, settings: Settings, registry: BackendRegistry, metrics: Metrics) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.count = 0  # shadows streaming or settling
        self._settling: set[asyncio.Task[None]] = set()

    def maybe_start(
        self, route: Route, start: pb.Start, metadata: tuple[tuple[str, str], ...]
    ) -> ShadowSession | None:
        """A running shadow of this session, if its route mirrors it and there is room."""
        if route.shadow_pool is None or random.random() >= route.shadow_fraction:
            return None
        pool = self.registry.pools.get(route.shadow_pool)
        if pool is None or self.count >= self.settings.shadow_max_sessions:
            return None
        self.count += 1  # until its settle task is done
        rate = (start.audio.sample_rate_hz or SAMPLE_RATE) * (start.audio.channels or 1)
        settings = ShadowSettings(
            accept_timeout=self.settings.accept_timeout,
            queue_bytes=int(self.settings.shadow_queue_seconds * rate * BYTES_PER_SAMPLE),
            finish_timeout=self.settings.shadow_finish_timeout,
            deadline=self.settings.session_deadline,
        )
        shadow_metadata = tuple(
            (k, f"{v}-shadow" if k == grpc_util.SESSION_ID_KEY else v) for k, v in metadata
        )
        log.info("mirroring to shadow pool %s", pool.name)
        shadow = ShadowSession(start, pool, settings, shadow_metadata)
        shadow.begin()
        return shadow

    def settle_later(
        self, shadow: ShadowSession, final: pb.Finished | None, language: str, route: str
    ) -> None:
        """Compare in the background: the primary's end is never held up by its shadow."""
        task = asyncio.create_task(
            settle(shadow, final, language, route, self.metrics), name="shadow-settle"
        )
        self._settling.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settling.discard(task)
        self.count -= 1

    async def cancel_all(self) -> None:
        """At exit: shadows are only statistics, so they are not waited for."""
        for task in list(self._settling):
            task.cancel()
        await asyncio.gather(*self._settling, return_exceptions=True)
