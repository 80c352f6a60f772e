"""An ASGI app served by uvicorn inside a service's own event loop and lifecycle.

uvicorn installs its own SIGTERM handler and, on shutdown, closes open WebSockets with
1012 without waiting. The services drain first (their own signal handling), and only
then stop the HTTP server, so uvicorn's signal capture is switched off here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve_http(
    app: Any, host: str, port: int, **config: Any
) -> AsyncIterator[uvicorn.Server]:
    """Serve `app` on host:port until the block exits; raises if the port cannot open."""
    server = _EmbeddedServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            **config,
        )
    )
    task = asyncio.create_task(server.serve(), name=f"http:{port}")
    while not server.started:
        if task.done():
            task.result()  # uvicorn failed to start (port in use, ...): raise its error
            raise RuntimeError(f"HTTP server on {host}:{port} stopped during start-up")
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


def health_app(
    readiness: Callable[[], tuple[bool, dict[str, Any]]],
    registry: CollectorRegistry,
    before_scrape: Callable[[], None] | None = None,
) -> Starlette:
    """The internal tiers' HTTP port: /readiness (200 or 503, with a JSON body that says
    why), /healthz (liveness only) and /metrics (Prometheus)."""

    async def ready(_: Request) -> Response:
        is_ready, body = readiness()
        return JSONResponse(body, status_code=200 if is_ready else 503)

    async def alive(_: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def metrics(_: Request) -> Response:
        if before_scrape is not None:
            before_scrape()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[Route("/readiness", ready), Route("/healthz", alive), Route("/metrics", metrics)]
    )
