"""The browser page to try recognition (`GET /demo/`), and what it needs from the server.

The page is static (HTML, JS, CSS in `demo_static/`, no build step, no CDN). It speaks the
public protocol like any browser client; the server adds only two things for it:

- security headers on every file: a strict Content-Security-Policy computed from the Host
  the browser used (CSP's `'self'` does not cover `ws:`/`wss:` in every browser), no
  sniffing, no referrer, no framing;
- `GET /demo/config.json`: the processes and languages of the route table, so the page
  offers what this deployment supports: the router's RouteDirectory.ListRoutes, cached for
  `ROUTES_CACHE_SECONDS`.

See docs/demo.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

import grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.endpoint.backend import RouterClient

log = logging.getLogger("services.endpoint.demo")

STATIC_DIR = Path(__file__).resolve().parent / "demo_static"
ROUTES_CACHE_SECONDS = 30.0
# A Host header worth putting into the policy: a name or address and a port, nothing that
# could end a CSP directive.
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def content_security_policy(host: str) -> str:
    """The page's policy: its own files only; WebSockets to the host it was loaded from."""
    sockets = f" ws://{host} wss://{host}" if _HOST.match(host) else ""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",  # the AudioWorklet module too
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src 'self'{sockets}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def security_headers(host: str) -> list[tuple[bytes, bytes]]:
    headers = {
        "content-security-policy": content_security_policy(host),
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
        "cross-origin-opener-policy": "same-origin",
        "permissions-policy": "microphone=(self), camera=(), geolocation=()",
        "cache-control": "no-cache",
    }
    return [(k.encode(), v.encode()) for k, v in headers.items()]


class SecurityHeaders:
    """ASGI middleware: the demo's headers on every response (404s included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        extra = security_headers(host)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k for k, _ in extra}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RouteListing:
    """Processes and languages of the route table, asked of the router at most once per
    `ROUTES_CACHE_SECONDS` however many pages load."""

    def __init__(self, router: RouterClient) -> None:
        self.router = router
        self._cached: dict[str, list[str]] | None = None
        self._cached_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> dict[str, list[str]]:
        async with self._lock:  # one call at a time
            if self._cached is None or time.monotonic() - self._cached_at > ROUTES_CACHE_SECONDS:
                self._cached = await self.router.list_routes()
                self._cached_at = time.monotonic()
            return self._cached


def create_demo_app(router: RouterClient) -> ASGIApp:
    """The app to mount at /demo: the static page and its config.json."""
    listing = RouteListing(router)

    async def config(request: Request) -> Response:
        try:
            routes = await listing.get()
        except grpc.aio.AioRpcError as exc:
            log.warning("the demo cannot list the routes: %s", exc)
            body: dict[str, Any] = {
                "error": {
                    "code": "backend_unavailable",
                    "message": "the router did not list its routes; type a language",
                    "retryable": True,
                }
            }
            return JSONResponse(body, 503)
        return JSONResponse({"processes": routes})

    app = Starlette(
        routes=[
            Route("/config.json", config),
            Mount("/", StaticFiles(directory=STATIC_DIR, html=True)),
        ]
    )
    return SecurityHeaders(app)
