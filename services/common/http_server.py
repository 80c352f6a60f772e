"""An ASGI app served by uvicorn inside a service's own event loop and lifecycle.

uvicorn installs its own SIGTERM handler and, on shutdown, closes open WebSockets with
1012 without waiting. The services drain first (their own signal handling), and only
then stop the HTTP server, so uvicorn's signal capture is switched off here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator
from typing import Any

import uvicorn


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
