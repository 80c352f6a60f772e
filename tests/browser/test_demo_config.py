"""The demo app without a browser: what config.json answers when the router cannot."""

from __future__ import annotations

import httpx

from services.endpoint.backend import RouterClient
from services.endpoint.demo import create_demo_app
from tests.support.processes import free_port


async def test_config_is_503_with_the_error_body_when_the_router_is_down() -> None:
    router = RouterClient(f"127.0.0.1:{free_port()}", deadline=5)  # nothing listens there
    try:
        transport = httpx.ASGITransport(app=create_demo_app(router))
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            response = await client.get("/config.json", timeout=15)
    finally:
        await router.close()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "backend_unavailable"
    assert response.json()["error"]["retryable"] is True
    assert "connect-src 'self' ws://demo wss://demo" in response.headers["content-security-policy"]
