"""The endpoint's process: the public routes composed over admission and the two flows,
readiness and metrics, and the drain on the stop signal.

Each concern has its module: `admission` (may a request open a session), `flow` (open on
the router, record, summarise), `websocket_flow` and `http_flow` (the transports), `session`
(one WebSocket session's audio and results).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.http_server import serve_http
from services.endpoint import demo, logfilters
from services.endpoint.admission import Admission
from services.endpoint.config import Settings
from services.endpoint.flow import SessionFlow
from services.endpoint.http_flow import HttpFlow
from services.endpoint.metrics import Metrics
from services.endpoint.session import SessionLimits
from services.endpoint.websocket_flow import WebSocketFlow

log = logging.getLogger("services.endpoint")

# The largest frame uvicorn reads at all; frames between max_frame_bytes and this get
# the endpoint's JSON error and close 1009, larger ones the library's bare 1009.
WS_MAX_SIZE = 1024 * 1024


class Endpoint:
    """One process's parts, built complete: admission, the session flows, metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.admission = Admission(settings, self.metrics)
        self.flow = SessionFlow(settings, self.metrics)
        limits = SessionLimits(
            max_frame_bytes=settings.max_frame_bytes,
            idle_timeout=settings.idle_timeout,
            max_session_seconds=settings.max_session_seconds,
            final_timeout=settings.final_timeout,
        )
        self.tracker = self.admission.tracker
        self.websocket = WebSocketFlow(self.admission, self.flow, limits, self.tracker.expired)
        self.http = HttpFlow(settings, self.admission, self.flow)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        reason = "draining" if self.tracker.draining else ""
        return not reason, {
            "ready": not reason,
            "reason": reason,
            "active_sessions": self.tracker.by_key(),
        }

    async def close(self) -> None:
        await self.flow.close()


def create_app(endpoint: Endpoint) -> FastAPI:
    app = FastAPI(title="kikimimi endpoint", docs_url=None, redoc_url=None, openapi_url=None)

    @app.websocket("/")
    async def websocket_root(ws: WebSocket) -> None:
        await endpoint.websocket(ws)

    @app.post("/")
    async def http_root(request: Request) -> Response:
        return await endpoint.http(request)

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
        app.mount("/demo", demo.create_demo_app(endpoint.flow.router))
    return app


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Serve the public API until `stop` is set, then drain and shut down.

    Drain (docs/architecture.md, "Drain"): readiness fails and new sessions are refused at
    once; sessions in flight run on for ENDPOINT_DRAIN_SECONDS, then end with `draining`
    (1001); only then does the HTTP server stop.
    """
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
            await endpoint.tracker.drain()
    finally:
        await endpoint.close()
