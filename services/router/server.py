"""Wiring of the router: the routing Recognizer servicer and `serve()`.

The concerns live apart: the route table file in table.py, its listing for clients
(RouteDirectory) in directory.py, backends and their health in backends.py, one session's
relay and failover in proxy.py, its accounting in record.py, shadows in shadow.py,
/readiness and gauges in status.py, the drain in services.common.sessions
(docs/architecture.md, "Drain").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from services.common import grpc_util
from services.common.audio import BYTES_PER_SAMPLE, SAMPLE_RATE
from services.common.http_server import serve_http
from services.common.pb import recognizer_pb2 as pb
from services.common.pb import recognizer_pb2_grpc as pb_grpc
from services.common.sessions import SessionTracker
from services.router.backends import BackendPool, BackendRegistry
from services.router.config import Settings
from services.router.directory import RouteDirectory
from services.router.errors import (
    RETRYABLE_AT_START,
    BadStart,
    Draining,
    NoBackend,
    NoRoute,
    ServiceError,
)
from services.router.metrics import Metrics
from services.router.proxy import ProxySession, ProxySettings
from services.router.record import SessionRecord
from services.router.routes import Route, RouteTable
from services.router.shadow import ShadowLauncher
from services.router.status import RouterStatus
from services.router.table import TableFile, TableWatcher, read_table

log = logging.getLogger("services.router")

START_TIMEOUT_SECONDS = 10.0
# How long a cancelled helper task of a session may take to finish: grpc's aio writes do
# not always give way to cancellation at once, and a session must never hang on one.
CANCEL_GRACE_SECONDS = 2.0
HEALTH_SERVICES = ("", grpc_util.RECOGNIZER_SERVICE)

Context = grpc.aio.ServicerContext[pb.RecognizeRequest, pb.RecognizeResponse]


async def settle_cancelled(*tasks: asyncio.Task[Any]) -> None:
    """Wait (bounded) for cancelled tasks to finish; log the ones that would not."""
    _, stuck = await asyncio.wait(tasks, timeout=CANCEL_GRACE_SECONDS)
    for task in stuck:
        log.warning("task %s did not stop within %g s", task.get_name(), CANCEL_GRACE_SECONDS)


async def read_start(requests: AsyncIterator[pb.RecognizeRequest]) -> pb.Start:
    try:
        first = await asyncio.wait_for(anext(requests), START_TIMEOUT_SECONDS)
    except (StopAsyncIteration, TimeoutError):
        raise BadStart("no start message") from None
    if first.WhichOneof("request") != "start":
        raise BadStart("the first message of a session must be start")
    return first.start


def no_route(table: RouteTable, start: pb.Start) -> NoRoute:
    languages = table.languages(start.process)
    if not languages:
        supported = ", ".join(table.processes())
        return NoRoute(
            f"unknown process {start.process!r}; supported: {supported}",
            ((grpc_util.SUPPORTED_PROCESSES_KEY, ",".join(table.processes())),),
        )
    return NoRoute(
        f"language {start.language!r} is not supported for {start.process}; "
        f"supported: {', '.join(languages)}",
        ((grpc_util.SUPPORTED_LANGUAGES_KEY, ",".join(languages)),),
    )


class Router(pb_grpc.RecognizerServicer):
    def __init__(self, settings: Settings, loaded: TableFile, health: Any) -> None:
        self.settings = settings
        self.health = health
        self.metrics = Metrics()
        self.tables = TableWatcher(settings.routes_file, loaded, self.metrics)
        self.registry = BackendRegistry(settings.resolve_interval)
        self.tracker = SessionTracker(
            drain_seconds=settings.drain_seconds,
            draining_gauge=self.metrics.draining,
            active_gauge=self.metrics.active,
        )
        self.shadows = ShadowLauncher(settings, self.registry, self.metrics)
        self.status = RouterStatus(
            self.tables, self.registry, self.tracker, self.shadows, self.metrics
        )
        self._reload: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Resolve the pools, say SERVING, and follow the route table file and DNS."""
        await self.registry.apply(self.tables.table.pools)
        self.registry.start()
        for service in HEALTH_SERVICES:
            await self.health.set(service, grpc_util.SERVING)
        self._reload = asyncio.create_task(
            self.tables.watch(self.settings.reload_interval, self._apply_table),
            name="reload-routes",
        )

    async def _apply_table(self, table: RouteTable) -> None:
        await self.registry.apply(table.pools)

    async def drain(self) -> None:
        """Say NOT_SERVING (balancing clients move new sessions to other routers at once),
        refuse what still comes (UNAVAILABLE), and let the sessions in flight end."""
        await self.health.enter_graceful_shutdown()
        self.tracker.start_draining()
        await self.tracker.drain()

    async def close(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
            await asyncio.gather(self._reload, return_exceptions=True)
        await self.shadows.cancel_all()
        await self.registry.close()

    # -- sessions --------------------------------------------------------------------
    # grpc's reader/writer style (context.write); the generated stubs know only generators.
    async def Recognize(  # type: ignore[override]
        self, request_iterator: AsyncIterator[pb.RecognizeRequest], context: Context
    ) -> None:
        """One session. A coroutine, not a generator: when the caller goes away, grpc cancels
        it and every `finally` runs at once (an abandoned generator is only finalised by the
        garbage collector, leaking its backend's session count until then)."""
        record = SessionRecord(log, context.invocation_metadata())
        with self.tracker.session():
            try:
                await self._serve(record, request_iterator, context)
            except ServiceError as exc:
                record.outcome = exc.outcome
                self.metrics.errors.labels(exc.status.name).inc()
                if exc.metadata:
                    context.set_trailing_metadata(exc.metadata)
                await context.abort(exc.status, str(exc))
            except asyncio.CancelledError:
                # The caller may hang up as soon as it has the final result: that is success.
                record.outcome = "ok" if record.delivered else "cancelled"
                raise
            finally:
                record.close(self.metrics, self.shadows)
                if record.pump is not None:
                    await settle_cancelled(record.pump)

    async def _serve(
        self,
        record: SessionRecord,
        requests: AsyncIterator[pb.RecognizeRequest],
        context: Context,
    ) -> None:
        """Route the session, put it on a backend, relay until the final result."""
        # Read start before any refusal: a status sent while the caller is still writing
        # it can reach the caller as INTERNAL instead (grpc/grpc#36066).
        start = await read_start(requests)
        if self.tracker.draining:
            raise Draining("the router is draining")
        record.started(start)
        route, pool = self._route(start)
        record.route = f"{route.process}/{route.language}"
        record.proxy = proxy = ProxySession(
            start, pool, self._proxy_settings(start), record.metadata
        )
        accepted = await proxy.connect(RETRYABLE_AT_START)
        record.shadow = self.shadows.maybe_start(route, start, record.metadata)
        if record.shadow is not None:
            proxy.mirror = record.shadow.offer
        await context.write(pb.RecognizeResponse(accepted=accepted))
        record.pump = asyncio.create_task(proxy.pump_client(requests), name="pump")
        await self._relay_until_drain_expires(proxy, context, record.delivered)

    def _route(self, start: pb.Start) -> tuple[Route, BackendPool]:
        table = self.tables.table
        route = table.lookup(start.process, start.language)
        if route is None:
            raise no_route(table, start)
        pool = self.registry.pools.get(route.pool)
        if pool is None:  # only while a reload swaps tables
            raise NoBackend(f"pool {route.pool} is being reloaded")
        return route, pool

    def _proxy_settings(self, start: pb.Start) -> ProxySettings:
        rate = start.audio.sample_rate_hz or SAMPLE_RATE
        return ProxySettings(
            accept_timeout=self.settings.accept_timeout,
            start_attempts=self.settings.start_attempts,
            max_failovers=self.settings.max_failovers,
            buffer_bytes=int(self.settings.failover_buffer_seconds * rate * BYTES_PER_SAMPLE),
            deadline=self.settings.session_deadline,
        )

    async def _relay_until_drain_expires(
        self, proxy: ProxySession, context: Context, delivered: list[pb.Finished]
    ) -> None:
        """Relay the backend's results to the caller, the final one into `delivered`; raises
        Draining when the drain deadline passes first."""

        async def relay() -> None:
            async for reply in proxy.relay():  # ends right after finished
                await context.write(reply)
                if reply.HasField("finished"):
                    delivered.append(reply.finished)

        relaying = asyncio.create_task(relay(), name="relay")
        expired = asyncio.create_task(self.tracker.expired.wait(), name="drain-expired")
        try:
            await asyncio.wait({relaying, expired}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (relaying, expired):
                task.cancel()
            await settle_cancelled(relaying, expired)
        if not relaying.cancelled():  # it ended before the deadline: its error, if any
            return relaying.result()
        raise Draining("the router's drain deadline passed")


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """Connections end after `max_connection_age` (grpc adds ±10 % jitter) so that clients
    re-resolve; the sessions on them may run their whole deadline first."""
    return [
        *grpc_util.SERVER_OPTIONS,
        ("grpc.max_connection_age_ms", int(settings.max_connection_age * 1000)),
        ("grpc.max_connection_age_grace_ms", int(settings.session_deadline * 1000)),
    ]


def load_table_or_exit(settings: Settings) -> TableFile:
    try:
        loaded = read_table(settings.routes_file)
    except OSError as exc:
        loaded = TableFile("", None, str(exc))
    if loaded is None or loaded.table is None:
        error = loaded.error if loaded else "empty"
        raise SystemExit(f"cannot load the route table ROUTER_ROUTES_FILE: {error}")
    return loaded


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the router until `stop` is set, then drain and shut down."""
    loaded = load_table_or_exit(settings)
    server = grpc.aio.server(options=server_options(settings))
    router = Router(settings, loaded, grpc_util.add_health(server))
    pb_grpc.add_RecognizerServicer_to_server(router, server)
    pb_grpc.add_RouteDirectoryServicer_to_server(RouteDirectory(router.tables), server)
    server.add_insecure_port(f"{settings.host}:{settings.grpc_port}")
    await router.start()
    await server.start()
    try:
        async with serve_http(router.status.http_app(), settings.host, settings.http_port):
            log.info(
                "router serving",
                extra={
                    "grpc_port": settings.grpc_port,
                    "http_port": settings.http_port,
                    "routes": len(router.tables.table.routes),
                },
            )
            await stop.wait()
            await router.drain()
    finally:
        await server.stop(grace=1)
        await router.close()
