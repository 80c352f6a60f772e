"""Wiring of the endpoint: the public WebSocket and HTTP API, health, metrics, drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.http_server import serve_http
from services.common.lifecycle import wait_for_sessions
from services.common.logs import session_id_var, summary
from services.common.tracing import SessionSpan
from services.endpoint import demo, http_api, logfilters
from services.endpoint.audio import AudioNormaliser
from services.endpoint.auth import Authenticator
from services.endpoint.backend import BackendStream, RouterClient
from services.endpoint.config import Settings
from services.endpoint.errors import Refusal, unavailable
from services.endpoint.formats import ResultFormatter
from services.endpoint.handshake import SessionParams, parse_handshake
from services.endpoint.metrics import Metrics
from services.endpoint.session import SessionLimits, WebSocketSession

log = logging.getLogger("services.endpoint")

# The largest frame uvicorn reads at all; frames between max_frame_bytes and this get
# the endpoint's JSON error and close 1009, larger ones the library's bare 1009.
WS_MAX_SIZE = 1024 * 1024


class Endpoint:
    """Everything a session needs from the process: settings, router, auth, admission."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.router = RouterClient(settings.router_address, settings.max_session_seconds + 60)
        self.auth = Authenticator(settings)
        self.metrics = Metrics()
        self.limits = SessionLimits(
            max_frame_bytes=settings.max_frame_bytes,
            idle_timeout=settings.idle_timeout,
            max_session_seconds=settings.max_session_seconds,
            final_timeout=settings.final_timeout,
        )
        self.active: Counter[str] = Counter()
        self.draining = False
        self.drain_expired = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # -- admission ---------------------------------------------------------------------
    def _check_origin(self, headers: Mapping[str, str]) -> None:
        origin = headers.get("origin")
        allowed = self.settings.allowed_origins
        if origin and "*" not in allowed and origin not in allowed:
            raise Refusal(403, "origin_not_allowed", f"origin {origin!r} is not allowed")

    def _admit(self, params: SessionParams) -> None:
        if self.draining:
            raise unavailable(
                "draining", "the server is shutting down", self.settings.retry_after_seconds
            )
        # `active` already counts this session (admitting() wraps the call).
        if self.active[params.process] > self.settings.max_sessions_per_process:
            raise unavailable(
                "too_many_sessions",
                f"the concurrent session limit for {params.process} is reached",
                self.settings.retry_after_seconds,
            )

    @contextlib.contextmanager
    def admitting(self, process: str) -> Iterator[None]:
        """Count a session (handshake included) against its process's cap while it runs."""
        self.active[process] += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.active[process] -= 1
            if self.active[process] <= 0:
                del self.active[process]  # raw client strings must not accumulate
            if not self.active:
                self._idle.set()

    @contextlib.contextmanager
    def accepted(self, process: str) -> Iterator[None]:
        """The active-sessions gauge, for sessions a backend accepted (bounded labels)."""
        self.metrics.active.labels(process).inc()
        try:
            yield
        finally:
            self.metrics.active.labels(process).dec()

    def check(self, headers: Mapping[str, str], query: Mapping[str, str]) -> SessionParams:
        """Everything decided before the backend is asked: parameters, origin, token."""
        params = parse_handshake(headers, query)
        self._check_origin(headers)
        self.auth.check(params.token, params.process)
        return params

    async def open(
        self, params: SessionParams, headers: Mapping[str, str], session_id: str
    ) -> BackendStream:
        """Admit the session and open it on the router; raises Refusal."""
        self._admit(params)
        span = SessionSpan("endpoint", headers.get("traceparent", ""), session_id)
        span.set(process=params.process, language=params.language)
        try:
            stream = await self.router.open(
                session_id,
                params,
                span.traceparent,
                self.settings.accept_timeout,
                self.settings.retry_after_seconds,
            )
        except Refusal as refusal:
            span.end(refusal.code)
            raise
        stream.span = span
        return stream

    def refused(self, refusal: Refusal) -> JSONResponse:
        self.metrics.refusals.labels(str(refusal.status), refusal.code).inc()
        log.info(
            "refused: %s",
            refusal.message,
            extra={"status": refusal.status, "code": refusal.code},
        )
        return JSONResponse(refusal.body(), refusal.status, headers=refusal.headers)

    # -- WebSocket -----------------------------------------------------------------------
    async def websocket_session(self, ws: WebSocket) -> None:
        session_id = uuid.uuid4().hex
        session_id_var.set(session_id)
        headers = {k.lower(): v for k, v in ws.headers.items()}
        query = dict(ws.query_params)
        began = time.monotonic()
        try:
            params = self.check(headers, query)
        except Refusal as refusal:
            await ws.send_denial_response(self.refused(refusal))
            return
        with self.admitting(params.process):
            try:
                stream = await self.open(params, headers, session_id)
            except Refusal as refusal:
                await ws.send_denial_response(self.refused(refusal))
                return
            with self.accepted(params.process):
                await ws.accept()
                session = WebSocketSession(
                    ws,
                    stream,
                    ResultFormatter(params.process, params.language, params.options, session_id),
                    AudioNormaliser(params.audio),
                    self.limits,
                    self.drain_expired,
                )
                result = await session.run()
        stream.finish(result.outcome)
        self.record(params, result.outcome, result.audio_seconds)
        if result.first_result_s is not None:
            self.metrics.first_result.observe(result.first_result_s)
        if result.final_after_break_s is not None:
            self.metrics.final_latency.observe(result.final_after_break_s)
        summary(
            log,
            transport="websocket",
            mimi_process=params.process,  # `process` is a LogRecord attribute
            language=params.language,
            outcome=result.outcome,
            close_code=result.close_code,
            backend=stream.accepted.backend,
            audio_s=round(result.audio_seconds, 3),
            duration_s=round(time.monotonic() - began, 3),
            first_result_s=result.first_result_s,
            final_after_break_s=result.final_after_break_s,
        )

    def record(self, params: SessionParams, outcome: str, audio_seconds: float) -> None:
        self.metrics.sessions.labels(params.process, params.language, outcome).inc()
        self.metrics.audio_seconds.labels(params.process).inc(audio_seconds)

    # -- HTTP POST ---------------------------------------------------------------------
    async def http_session(self, request: Request) -> Response:
        return await http_api.recognise(self, request)

    # -- health and drain ----------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        reason = "draining" if self.draining else ""
        return not reason, {
            "ready": not reason,
            "reason": reason,
            "active_sessions": dict(self.active),
        }

    async def drain(self) -> None:
        """Refuse new sessions, let sessions finish up to the deadline, then end them (1001)."""
        self.draining = True
        self.metrics.draining.set(1)
        log.info("draining", extra={"active_sessions": sum(self.active.values())})
        await wait_for_sessions(
            self._idle,
            self.settings.drain_seconds,
            expire=self.drain_expired.set,
            describe_active=lambda: dict(self.active),
            grace=5,  # a session's error message and close handshake with a slow client
        )

    async def close(self) -> None:
        await self.router.close()


def create_app(endpoint: Endpoint) -> FastAPI:
    app = FastAPI(title="kikimimi endpoint", docs_url=None, redoc_url=None, openapi_url=None)

    @app.websocket("/")
    async def websocket_root(ws: WebSocket) -> None:
        await endpoint.websocket_session(ws)

    @app.post("/")
    async def http_root(request: Request) -> Response:
        return await endpoint.http_session(request)

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "alive"})

    @app.get("/readiness")
    async def readiness() -> Response:
        ready, body = endpoint.readiness()
        return JSONResponse(body, 200 if ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(endpoint.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if endpoint.settings.demo:  # the browser page, docs/demo.md
        app.mount("/demo", demo.create_demo_app(endpoint.router))
    return app


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serve the public API until `stop` is set, then drain and shut down."""
    logfilters.install()
    if settings.auth == "off":
        log.warning(
            "AUTHENTICATION IS OFF: anyone who reaches this port can use it "
            "(set ENDPOINT_AUTH=tokens or jwt outside local development)"
        )
    endpoint = Endpoint(settings)
    try:
        async with serve_http(
            create_app(endpoint),
            settings.host,
            settings.port,
            ws_max_size=WS_MAX_SIZE,
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
        ):
            log.info("endpoint serving", extra={"port": settings.port, "auth": settings.auth})
            await stop.wait()
            await endpoint.drain()
    finally:
        await endpoint.close()
