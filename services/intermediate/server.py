"""Wiring of the intermediate: gRPC Recognizer over the pool, HTTP health, drain."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from starlette.applications import Starlette

from services.common import grpc_util
from services.common.http_server import health_app, serve_http
from services.common.lifecycle import wait_for_sessions
from services.common.logs import session_id_var, summary
from services.common.pb import recognizer_pb2 as pb
from services.common.pb import recognizer_pb2_grpc as pb_grpc
from services.common.tracing import SessionSpan
from services.intermediate.config import Settings
from services.intermediate.errors import BadStart, Draining, EngineLost, IntermediateError
from services.intermediate.metrics import Metrics, running_tasks
from services.intermediate.pool import EngineState, Pool, PoolSettings
from services.intermediate.session import EngineSession

log = logging.getLogger("services.intermediate")

# A router sends `start` at once; a stream that does not is broken.
START_TIMEOUT_SECONDS = 10.0
# The router watches the Recognizer service; "" is the whole server. Both follow readiness.
HEALTH_SERVICES = ("", grpc_util.RECOGNIZER_SERVICE)


def validate_start(request: pb.RecognizeRequest) -> pb.Start:
    if request.WhichOneof("request") != "start":
        raise BadStart("the first message of a session must be start")
    start = request.start
    audio = start.audio
    if audio.encoding != pb.AudioFormat.LINEAR16:
        raise BadStart("audio must be LINEAR16 on internal hops")
    if not 8000 <= audio.sample_rate_hz <= 48000 or audio.channels != 1:
        raise BadStart(
            f"audio must be mono 8-48 kHz, got {audio.sample_rate_hz} Hz x {audio.channels}"
        )
    if not start.language:
        raise BadStart("language is missing")
    return start


class Intermediate(pb_grpc.RecognizerServicer):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = Pool(
            settings.engines,
            PoolSettings(
                capacity=settings.engine_capacity,
                idle_connections=settings.idle_connections,
                connect_timeout=settings.connect_timeout,
                ping_interval=settings.ping_interval,
                ping_timeout=settings.ping_timeout,
                backoff_initial=settings.backoff_initial,
                backoff_max=settings.backoff_max,
            ),
        )
        self.metrics = Metrics(self.pool)
        self.pool.listeners.append(self._on_pool_change)
        self.health_servicer: Any = None  # set by serve() once the gRPC server exists
        self._health_dirty = asyncio.Event()
        self._health_sent: int | None = None
        self.draining = False
        self.drain_expired: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # -- readiness -----------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        engines = self.pool.snapshot()
        free = sum(e["free"] for e in engines)
        busy = sum(e["busy"] for e in engines)
        if self.draining:
            reason = "draining"
        elif not any(e["state"] == EngineState.UP for e in engines):
            reason = "no engine is up"
        elif free <= 0:
            reason = "no free engine slot"
        else:
            reason = ""
        body = {
            "ready": not reason,
            "reason": reason,
            "draining": self.draining,
            "free_slots": free,
            "busy_slots": busy,
            "active_sessions": self.active,
            "tasks": running_tasks(),
            "engines": engines,
        }
        return not reason, body

    def _on_pool_change(self) -> None:
        self._health_dirty.set()

    async def sync_health(self) -> None:
        """Keep grpc.health.v1 equal to readiness: SERVING exactly while /readiness is 200.

        One task applies the latest readiness whenever it may have changed, so the status
        a watcher ends up with is always the current one, never a stale update.
        """
        while True:
            await self._health_dirty.wait()
            self._health_dirty.clear()
            ready, body = self.readiness()
            status = grpc_util.SERVING if ready else grpc_util.NOT_SERVING
            if status != self._health_sent:
                for service in HEALTH_SERVICES:
                    await self.health_servicer.set(service, status)
                if self._health_sent is not None:  # not the first status after start
                    self.metrics.readiness_changes.labels(str(ready).lower()).inc()
                self._health_sent = status
                log.info(
                    "ready" if ready else f"not ready: {body['reason']}",
                    extra={"ready": ready, "free_slots": body["free_slots"]},
                )

    # -- sessions --------------------------------------------------------------------
    # grpc's reader/writer style (context.write); the generated stubs know only generators.
    async def Recognize(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[pb.RecognizeRequest],
        context: grpc.aio.ServicerContext[pb.RecognizeRequest, pb.RecognizeResponse],
    ) -> None:
        """One session. A coroutine (not a generator): cancellation runs every `finally`."""
        incoming = context.invocation_metadata()
        session_id_var.set(grpc_util.metadata_value(incoming, grpc_util.SESSION_ID_KEY))
        span = SessionSpan(
            "intermediate",
            grpc_util.metadata_value(incoming, grpc_util.TRACEPARENT_KEY),
            session_id_var.get(),
        )
        began = time.monotonic()
        outcome, backend, audio_seconds, error = "ok", "", 0.0, ""
        session: EngineSession | None = None
        self.active += 1
        self._idle.clear()
        self.metrics.active.inc()
        try:
            # Read start before any refusal: a status sent while the client is still writing
            # it can reach the router as INTERNAL instead (grpc/grpc#36066).
            try:
                async with asyncio.timeout(START_TIMEOUT_SECONDS):
                    first = await anext(request_iterator)
            except (StopAsyncIteration, TimeoutError):
                raise BadStart("no start message") from None
            if self.draining:
                raise Draining("the intermediate is draining")
            start = validate_start(first)
            if not session_id_var.get():
                session_id_var.set(start.session_id)
            wait_began = time.monotonic()
            try:
                lease = await self.pool.checkout(self.settings.checkout_timeout)
            finally:
                self.metrics.checkout_wait.observe(time.monotonic() - wait_began)
            graceful = False
            try:
                backend = f"{self.settings.name}/{lease.target.url}"
                session = EngineSession(
                    lease.conn,
                    start,
                    self.settings.engine_sample_rate,
                    self.settings.reply_timeout,
                    self.drain_expired,
                )
                await context.write(pb.RecognizeResponse(accepted=pb.Accepted(backend=backend)))
                try:
                    await session.run(request_iterator, context.write)
                finally:
                    audio_seconds = session.audio_seconds
                graceful = True
            except EngineLost:
                lease.target.kick()  # let the maintainer look at the engine now
                raise
            finally:
                await lease.release(graceful)
        except IntermediateError as exc:
            outcome, error = exc.outcome, str(exc)
            await context.abort(exc.status, str(exc))
        except asyncio.CancelledError:
            # The router may cancel the call as soon as it has `finished`: still a success.
            outcome = "ok" if session is not None and session.finished else "cancelled"
            raise
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            outcome, error = "internal_error", f"{type(exc).__name__}: {exc}"
            log.exception("session failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error in the intermediate")
        finally:
            self.active -= 1
            self.metrics.active.dec()
            if self.active == 0:
                self._idle.set()
            self.metrics.sessions.labels(outcome).inc()
            self.metrics.audio_seconds.inc(audio_seconds)
            span.set(backend=backend, audio_s=audio_seconds)
            span.end(outcome)
            summary(
                log,
                outcome=outcome,
                error=error,
                backend=backend,
                duration_s=round(time.monotonic() - began, 3),
                audio_s=round(audio_seconds, 3),
            )

    # -- HTTP ------------------------------------------------------------------------
    def http_app(self) -> Starlette:
        return health_app(self.readiness, self.metrics.registry)

    # -- drain -----------------------------------------------------------------------
    async def drain(self) -> None:
        """Refuse new sessions, let sessions in flight finish up to the deadline, then end them."""
        self.draining = True
        self.metrics.draining.set(1)
        self._on_pool_change()
        log.info("draining", extra={"active_sessions": self.active})
        await wait_for_sessions(
            self._idle,
            self.settings.drain_seconds,
            expire=lambda: self.drain_expired.set_result(None),
            describe_active=lambda: self.active,
        )


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the intermediate until `stop` is set, then drain and shut down."""
    intermediate = Intermediate(settings)
    server = grpc.aio.server(options=grpc_util.SERVER_OPTIONS)
    pb_grpc.add_RecognizerServicer_to_server(intermediate, server)
    health = grpc_util.add_health(server)
    for service in HEALTH_SERVICES:  # unready until the first engine answers
        await health.set(service, grpc_util.NOT_SERVING)
    intermediate.health_servicer = health
    server.add_insecure_port(f"{settings.host}:{settings.grpc_port}")
    health_task = asyncio.create_task(intermediate.sync_health(), name="health-sync")
    intermediate.pool.start()
    intermediate._on_pool_change()
    await server.start()
    try:
        async with serve_http(intermediate.http_app(), settings.host, settings.http_port):
            log.info(
                "intermediate serving",
                extra={
                    "grpc_port": settings.grpc_port,
                    "http_port": settings.http_port,
                    "engines": settings.engines,
                },
            )
            await stop.wait()
            await intermediate.drain()
    finally:
        await server.stop(grace=1)
        health_task.cancel()
        await asyncio.gather(health_task, return_exceptions=True)
        await intermediate.pool.close()
