"""Wiring of the router: the routing Recognizer, route table reloads, HTTP health, drain."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
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
from services.router.backends import BackendRegistry
from services.router.config import Settings
from services.router.errors import (
    RETRYABLE_AT_START,
    BadStart,
    Draining,
    NoBackend,
    NoRoute,
    RouterError,
)
from services.router.metrics import Metrics
from services.router.proxy import ProxySession, ProxySettings
from services.router.routes import Route as TableRoute
from services.router.routes import RouteTable, RouteTableError, parse_route_table
from services.router.shadow import ShadowSession, ShadowSettings, settle

log = logging.getLogger("services.router")

START_TIMEOUT_SECONDS = 10.0
# How long a cancelled helper task of a session may take to finish: grpc's aio writes do
# not always give way to cancellation at once, and a session must never hang on one.
CANCEL_GRACE_SECONDS = 2.0


async def settle_cancelled(*tasks: asyncio.Task[Any]) -> None:
    """Wait (bounded) for cancelled tasks to finish; log the ones that would not."""
    _, stuck = await asyncio.wait(tasks, timeout=CANCEL_GRACE_SECONDS)
    for task in stuck:
        log.warning("task %s did not stop within %g s", task.get_name(), CANCEL_GRACE_SECONDS)


class Router(pb_grpc.RecognizerServicer):
    def __init__(self, settings: Settings, table: RouteTable) -> None:
        self.settings = settings
        self.table = table
        self.table_digest = ""
        self.registry = BackendRegistry(settings.resolve_interval)
        self.metrics = Metrics()
        self.health_servicer: Any = None
        self.draining = False
        self.drain_expired = asyncio.Event()
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.table_error = ""  # why the file on disk was rejected, while it is
        self.shadows: set[asyncio.Task[None]] = set()  # settling shadow sessions
        self.shadow_count = 0  # shadows streaming or settling

    # -- route table -----------------------------------------------------------------
    def read_table(self) -> tuple[RouteTable, str]:
        text = self.settings.routes_file.read_text()
        digest = hashlib.sha256(text.encode()).hexdigest()
        return parse_route_table(text, str(self.settings.routes_file)), digest

    async def reload_forever(self) -> None:
        """Re-read the route table when the file changes; a bad file keeps the old table."""
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            try:
                text = self.settings.routes_file.read_text()
            except OSError as exc:
                log.error("cannot read route table, keeping the old one: %s", exc)
                continue
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest == self.table_digest:
                continue
            self.table_digest = digest  # a rejected file is reported once, not every interval
            try:
                table = parse_route_table(text, str(self.settings.routes_file))
            except RouteTableError as exc:
                self.table_error = str(exc)
                self.metrics.reloads.labels("rejected").inc()
                self.metrics.table_ok.set(0)
                log.error("route table rejected, keeping the old one:\n%s", exc)
                continue
            # Pools first: a route never points at a pool the registry does not have.
            await self.registry.apply(table.pools)
            self.table, self.table_error = table, ""
            self.metrics.reloads.labels("applied").inc()
            self.metrics.table_ok.set(1)
            log.info("route table reloaded", extra={"routes": len(table.routes)})

    # -- sessions --------------------------------------------------------------------
    def _proxy_settings(self, start: pb.Start) -> ProxySettings:
        rate = start.audio.sample_rate_hz or 16000
        return ProxySettings(
            accept_timeout=self.settings.accept_timeout,
            start_attempts=self.settings.start_attempts,
            max_failovers=self.settings.max_failovers,
            buffer_bytes=int(self.settings.failover_buffer_seconds * rate * 2),
            deadline=self.settings.session_deadline,
        )

    # grpc's reader/writer style (context.write); the generated stubs know only generators.
    async def Recognize(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[pb.RecognizeRequest],
        context: grpc.aio.ServicerContext[pb.RecognizeRequest, pb.RecognizeResponse],
    ) -> None:
        """One session. A coroutine, not a generator: when the caller goes away, grpc cancels
        it and every `finally` runs at once (an abandoned generator is only finalised by the
        garbage collector, leaking its backend's session count until then)."""
        incoming = context.invocation_metadata()
        session_id_var.set(grpc_util.metadata_value(incoming, grpc_util.SESSION_ID_KEY))
        span = SessionSpan(
            "router",
            grpc_util.metadata_value(incoming, grpc_util.TRACEPARENT_KEY),
            session_id_var.get(),
        )
        # What every backend call carries on: the session id and this tier's trace span.
        metadata: tuple[tuple[str, str], ...] = ((grpc_util.SESSION_ID_KEY, session_id_var.get()),)
        if span.traceparent:
            metadata += ((grpc_util.TRACEPARENT_KEY, span.traceparent),)
        began = time.monotonic()
        outcome, route_label, language = "ok", "none", ""
        proxy: ProxySession | None = None
        shadow: ShadowSession | None = None
        delivered: list[pb.Finished] = []  # the final result, once the caller has it
        self.active += 1
        self._idle.clear()
        self.metrics.active.inc()
        pump: asyncio.Task[None] | None = None
        try:
            if self.draining:
                raise Draining("the router is draining")
            try:
                first = await asyncio.wait_for(anext(request_iterator), START_TIMEOUT_SECONDS)
            except (StopAsyncIteration, TimeoutError):
                raise BadStart("no start message") from None
            if first.WhichOneof("request") != "start":
                raise BadStart("the first message of a session must be start")
            start = first.start
            language = start.language
            if not session_id_var.get():
                session_id_var.set(start.session_id)
                metadata = ((grpc_util.SESSION_ID_KEY, start.session_id), *metadata[1:])
            route = self.table.lookup(start.process, start.language)
            if route is None:
                raise self._no_route(start)
            route_label = f"{route.process}/{route.language}"
            pool = self.registry.pools.get(route.pool)
            if pool is None:  # only while a reload swaps tables
                raise NoBackend(f"pool {route.pool} is being reloaded")
            proxy = ProxySession(start, pool, self._proxy_settings(start), metadata)
            accepted = await proxy.connect(RETRYABLE_AT_START)
            shadow = self._maybe_shadow(route, start, metadata)
            if shadow is not None:
                proxy.mirror = shadow.offer
                shadow.begin()
            await context.write(pb.RecognizeResponse(accepted=accepted))
            pump = asyncio.create_task(proxy.pump_client(request_iterator), name="pump")
            await self._relay_until_drain_expires(proxy, context, delivered)
        except RouterError as exc:
            outcome = type(exc).__name__
            self.metrics.errors.labels(exc.status.name).inc()
            if exc.metadata:
                context.set_trailing_metadata(exc.metadata)
            await context.abort(exc.status, str(exc))
        except asyncio.CancelledError:
            # The caller may hang up as soon as it has the final result: that is success.
            outcome = "ok" if delivered else "cancelled"
            raise
        finally:
            # No await before the bookkeeping: grpc may cancel this task again while it
            # cleans up (the caller hangs up as soon as it has the final result), and a
            # CancelledError in here would skip the counts below and leak the session.
            if pump is not None:
                pump.cancel()
            if shadow is not None:
                self._settle_later(
                    shadow, delivered[0] if delivered else None, language, route_label
                )
            if proxy is not None:
                proxy.close()
                self.metrics.retries.labels(route_label).inc(proxy.retries)
                self.metrics.failovers.labels(route_label).inc(proxy.failovers)
                for address in proxy.used:
                    self.metrics.backend_sessions.labels(route_label, address).inc()
            self.active -= 1
            self.metrics.active.dec()
            if self.active == 0:
                self._idle.set()
            self.metrics.sessions.labels(route_label, outcome).inc()
            span.set(route=route_label, failovers=proxy.failovers if proxy else 0)
            span.end(outcome)
            summary(
                log,
                outcome=outcome,
                route=route_label,
                backend=proxy.accepted_by if proxy else "",
                backends=proxy.used if proxy else [],
                retries=proxy.retries if proxy else 0,
                failovers=proxy.failovers if proxy else 0,
                shadow=shadow.backend if shadow else None,
                duration_s=round(time.monotonic() - began, 3),
            )
            if pump is not None:
                await settle_cancelled(pump)

    # -- shadow traffic --------------------------------------------------------------
    def _maybe_shadow(
        self, route: TableRoute, start: pb.Start, metadata: tuple[tuple[str, str], ...]
    ) -> ShadowSession | None:
        if route.shadow_pool is None or random.random() >= route.shadow_fraction:
            return None
        pool = self.registry.pools.get(route.shadow_pool)
        if pool is None or self.shadow_count >= self.settings.shadow_max_sessions:
            return None
        self.shadow_count += 1  # until its settle task is done
        rate = (start.audio.sample_rate_hz or 16000) * (start.audio.channels or 1)
        settings = ShadowSettings(
            accept_timeout=self.settings.accept_timeout,
            queue_bytes=int(self.settings.shadow_queue_seconds * rate * 2),
            finish_timeout=self.settings.shadow_finish_timeout,
            deadline=self.settings.session_deadline,
        )
        shadow_metadata = tuple(
            (k, f"{v}-shadow" if k == grpc_util.SESSION_ID_KEY else v) for k, v in metadata
        )
        log.info("mirroring to shadow pool %s", pool.name)
        return ShadowSession(start, pool, settings, shadow_metadata)

    def _settle_later(
        self, shadow: ShadowSession, final: pb.Finished | None, language: str, route: str
    ) -> None:
        """Compare in the background: the primary's end is never held up by its shadow."""
        task = asyncio.create_task(
            settle(shadow, final, language, route, self.metrics), name="shadow-settle"
        )
        self.shadows.add(task)
        task.add_done_callback(self._shadow_done)

    def _shadow_done(self, task: asyncio.Task[None]) -> None:
        self.shadows.discard(task)
        self.shadow_count -= 1

    def _no_route(self, start: pb.Start) -> NoRoute:
        languages = self.table.languages(start.process)
        if not languages:
            supported = ", ".join(self.table.processes())
            return NoRoute(
                f"unknown process {start.process!r}; supported: {supported}",
                ((grpc_util.SUPPORTED_PROCESSES_KEY, ",".join(self.table.processes())),),
            )
        return NoRoute(
            f"language {start.language!r} is not supported for {start.process}; "
            f"supported: {', '.join(languages)}",
            ((grpc_util.SUPPORTED_LANGUAGES_KEY, ",".join(languages)),),
        )

    async def _relay_until_drain_expires(
        self,
        proxy: ProxySession,
        context: grpc.aio.ServicerContext[pb.RecognizeRequest, pb.RecognizeResponse],
        delivered: list[pb.Finished],
    ) -> None:
        """Relay the backend's results to the caller, the final one into `delivered`; raises
        Draining when the drain deadline passes first."""

        async def relay() -> None:
            async for reply in proxy.relay():  # ends right after finished
                await context.write(reply)
                if reply.HasField("finished"):
                    delivered.append(reply.finished)

        relaying = asyncio.create_task(relay(), name="relay")
        expired = asyncio.create_task(self.drain_expired.wait(), name="drain-expired")
        try:
            await asyncio.wait({relaying, expired}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (relaying, expired):
                task.cancel()
            await settle_cancelled(relaying, expired)
        if not relaying.cancelled():  # it ended before the deadline: its error, if any
            return relaying.result()
        raise Draining("the router's drain deadline passed")

    # -- HTTP ------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready while a route table is loaded and not draining; the body shows every route."""
        routes = []
        for (process, language), route in sorted(self.table.routes.items()):
            pool = self.registry.pools.get(route.pool)
            backends = list(pool.backends.values()) if pool else []
            routes.append(
                {
                    "process": process,
                    "language": language,
                    "pool": route.pool,
                    "shadow_pool": route.shadow_pool,
                    "shadow_fraction": route.shadow_fraction,
                    "backend_count": len(backends),
                    "healthy_backends": sum(b.healthy for b in backends),
                    "backends": [
                        {"address": b.address, "healthy": b.healthy, "sessions": b.outstanding}
                        for b in backends
                    ],
                }
            )
        reason = "draining" if self.draining else ""
        body = {
            "ready": not reason,
            "reason": reason,
            "routes_file": str(self.settings.routes_file),
            "routes_file_error": self.table_error,
            "active_sessions": self.active,
            "shadow_sessions": self.shadow_count,
            "routes": routes,
        }
        return not reason, body

    def update_gauges(self) -> None:
        self.metrics.healthy_backends.clear()
        self.metrics.backends.clear()
        for (process, language), route in self.table.routes.items():
            pool = self.registry.pools.get(route.pool)
            label = (f"{process}/{language}", route.pool)
            self.metrics.healthy_backends.labels(*label).set(pool.healthy_count() if pool else 0)
            self.metrics.backends.labels(*label).set(len(pool.backends) if pool else 0)

    def http_app(self) -> Starlette:
        return health_app(self.readiness, self.metrics.registry, self.update_gauges)

    # -- drain -----------------------------------------------------------------------
    async def drain(self) -> None:
        self.draining = True
        self.metrics.draining.set(1)
        if self.health_servicer is not None:
            await self.health_servicer.enter_graceful_shutdown()
        log.info("draining", extra={"active_sessions": self.active})
        await wait_for_sessions(
            self._idle,
            self.settings.drain_seconds,
            expire=self.drain_expired.set,
            describe_active=lambda: self.active,
        )


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the router until `stop` is set, then drain and shut down."""
    try:
        text = settings.routes_file.read_text()
        table = parse_route_table(text, str(settings.routes_file))
    except (OSError, RouteTableError) as exc:
        raise SystemExit(f"cannot load the route table ROUTER_ROUTES_FILE: {exc}") from None
    router = Router(settings, table)
    router.table_digest = hashlib.sha256(text.encode()).hexdigest()
    await router.registry.apply(table.pools)
    router.registry.start()
    server = grpc.aio.server(options=grpc_util.SERVER_OPTIONS)
    pb_grpc.add_RecognizerServicer_to_server(router, server)
    router.health_servicer = grpc_util.add_health(server)
    for service in ("", grpc_util.RECOGNIZER_SERVICE):
        await router.health_servicer.set(service, grpc_util.SERVING)
    router.metrics.table_ok.set(1)
    server.add_insecure_port(f"{settings.host}:{settings.grpc_port}")
    await server.start()
    reload_task = asyncio.create_task(router.reload_forever(), name="reload-routes")
    try:
        async with serve_http(router.http_app(), settings.host, settings.http_port):
            log.info(
                "router serving",
                extra={
                    "grpc_port": settings.grpc_port,
                    "http_port": settings.http_port,
                    "routes": len(table.routes),
                },
            )
            await stop.wait()
            await router.drain()
    finally:
        reload_task.cancel()
        await asyncio.gather(reload_task, return_exceptions=True)
        await server.stop(grace=1)
        for task in list(router.shadows):  # shadows are only statistics: do not wait for them
            task.cancel()
        await asyncio.gather(*router.shadows, return_exceptions=True)
        await router.registry.close()
