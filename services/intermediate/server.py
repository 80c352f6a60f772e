"""Wiring of the intermediate: the gRPC Recognizer over the engine pool, and `serve()`.

The pool is pool.py, one session over an engine connection session.py, /readiness and
gRPC health health.py, the drain services.common.sessions (docs/architecture.md, "Drain").
"""

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
from services.common.logs import session_id_var, summary
from services.common.pb import recognizer_pb2 as pb
from services.common.pb import recognizer_pb2_grpc as pb_grpc
from services.common.sessions import SessionTracker
from services.common.tracing import SessionSpan
from services.intermediate.config import Settings
from services.intermediate.errors import BadStart, Draining, EngineLost, ServiceError
from services.intermediate.health import HEALTH_SERVICES, HealthReporter
from services.intermediate.metrics import Metrics
from services.intermediate.pool import Lease, Pool, PoolSettings
from services.intermediate.session import EngineSession

log = logging.getLogger("services.intermediate")

# A router sends `start` at once; a stream that does not is broken.
START_TIMEOUT_SECONDS = 10.0

Context = grpc.aio.ServicerContext[pb.RecognizeRequest, pb.RecognizeResponse]


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
    def __init__(self, settings: Settings, health_servicer: Any) -> None:
        self.settings = settings
        self.pool = Pool(
            settings.engines,
            PoolSettings.of(settings),
        )
        self.metrics = Metrics(self.pool)
        self.tracker = SessionTracker(
            drain_seconds=settings.drain_seconds,
            draining_gauge=self.metrics.draining,
            active_gauge=self.metrics.active,
        )
        self.health = HealthReporter(self.pool, self.tracker, health_servicer, self.metrics)
        self._health_sync: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Unready until the first engine answers; then follow the pool."""
        for service in HEALTH_SERVICES:
            await self.health.servicer.set(service, grpc_util.NOT_SERVING)
        self._health_sync = asyncio.create_task(self.health.sync_forever(), name="health-sync")
        self.pool.start()

    async def drain(self) -> None:
        """Refuse new sessions, let sessions in flight finish up to the deadline, then end them."""
        self.tracker.start_draining()
        self.health.changed()
        await self.tracker.drain()

    async def close(self) -> None:
        if self._health_sync is not None:
            self._health_sync.cancel()
            await asyncio.gather(self._health_sync, return_exceptions=True)
        await self.pool.close()

    def http_app(self) -> Starlette:
        return health_app(self.health.readiness, self.metrics.registry)

    # -- sessions --------------------------------------------------------------------
    # grpc's reader/writer style (context.write); the generated stubs know only generators.
    async def Recognize(  # type: ignore[override]
        self, request_iterator: AsyncIterator[pb.RecognizeRequest], context: Context
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
        record = _Record()
        with self.tracker.session():
            try:
                start = await self._read_start(request_iterator)
                lease = await self._checkout()
                await self._run(lease, start, request_iterator, context, record)
            except ServiceError as exc:
                record.outcome, record.error = exc.outcome, str(exc)
                await context.abort(exc.status, str(exc))
            except asyncio.CancelledError:
                # The router may cancel the call as soon as it has `finished`: still a success.
                record.outcome = "ok" if record.finished else "cancelled"
                raise
            except Exception as exc:
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                record.outcome, record.error = "internal_error", f"{type(exc).__name__}: {exc}"
                log.exception("session failed")
                await context.abort(grpc.StatusCode.INTERNAL, "internal error in the intermediate")
            finally:
                self.metrics.sessions.labels(record.outcome).inc()
                self.metrics.audio_seconds.inc(record.audio_seconds)
                span.set(backend=record.backend, audio_seconds=record.audio_seconds)
                span.end(record.outcome)
                summary(
                    log,
                    outcome=record.outcome,
                    error=record.error,
                    backend=record.backend,
                    duration_seconds=round(time.monotonic() - began, 3),
                    audio_seconds=round(record.audio_seconds, 3),
                )

    async def _read_start(self, requests: AsyncIterator[pb.RecognizeRequest]) -> pb.Start:
        # Read start before any refusal: a status sent while the client is still writing
        # it can reach the router as INTERNAL instead (grpc/grpc#36066).
        try:
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                first = await anext(requests)
        except (StopAsyncIteration, TimeoutError):
            raise BadStart("no start message") from None
        if self.tracker.draining:
            raise Draining("the intermediate is draining")
        start = validate_start(first)
        if not session_id_var.get():
            session_id_var.set(start.session_id)
        return start

    async def _checkout(self) -> Lease:
        wait_began = time.monotonic()
        try:
            return await self.pool.checkout(self.settings.checkout_timeout)
        finally:
            self.metrics.checkout_wait.observe(time.monotonic() - wait_began)

    async def _run(
        self,
        lease: Lease,
        start: pb.Start,
        requests: AsyncIterator[pb.RecognizeRequest],
        context: Context,
        record: _Record,
    ) -> None:
        """The session on its engine connection; the lease is released whatever happens."""
        graceful = False
        try:
            record.backend = f"{self.settings.name}/{lease.target.url}"
            session = EngineSession(
                lease.conn,
                start,
                self.settings.engine_sample_rate,
                self.settings.reply_timeout,
                self.tracker.expired,
            )
            await context.write(pb.RecognizeResponse(accepted=pb.Accepted(backend=record.backend)))
            try:
                await session.run(requests, context.write)
            finally:
                record.audio_seconds = session.audio_seconds
                record.finished = session.finished
            graceful = True
        except EngineLost:
            lease.target.kick()  # let the maintainer look at the engine now
            raise
        finally:
            await lease.release(graceful)


class _Record:
    """What the summary line and the metrics say of one session."""

    def __init__(self) -> None:
        self.outcome = "ok"
        self.error = ""
        self.backend = ""
        self.audio_seconds = 0.0
        self.finished = False


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the intermediate until `stop` is set, then drain and shut down."""
    server = grpc.aio.server(options=grpc_util.SERVER_OPTIONS)
    intermediate = Intermediate(settings, grpc_util.add_health(server))
    pb_grpc.add_RecognizerServicer_to_server(intermediate, server)
    server.add_insecure_port(f"{settings.host}:{settings.grpc_port}")
    await intermediate.start()
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
        await intermediate.close()
