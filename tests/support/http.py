"""HTTP probes of the services: async (httpx) inside tests; blocking only where no event
loop may be awaited (starting processes, synchronous fixtures, `on_message` callbacks)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.processes import HOST, Service
from tests.support.timing import scaled

PROBE_TIMEOUT = 5.0


def base_url(service: Service | str) -> str:
    """`http://127.0.0.1:<its http port>` of a service, or a base URL as it is."""
    if isinstance(service, str):
        return service.rstrip("/")
    return f"http://{HOST}:{service.ports['http']}"


async def get_json(url: str) -> tuple[int, dict[str, Any]]:
    """GET `url`: (status, JSON body), whatever the status."""
    async with httpx.AsyncClient(timeout=scaled(PROBE_TIMEOUT)) as client:
        response = await client.get(url)
    return response.status_code, response.json() if response.content else {}


async def get_text(url: str) -> str:
    async with httpx.AsyncClient(timeout=scaled(PROBE_TIMEOUT)) as client:
        response = await client.get(url)
    response.raise_for_status()
    return response.text


async def readiness(service: Service) -> tuple[int, dict[str, Any]]:
    """`GET /readiness` of a service: (status, body)."""
    return await get_json(f"{base_url(service)}/readiness")


def get_json_blocking(url: str) -> tuple[int, dict[str, Any]]:
    """`get_json` for code that runs outside an event loop."""
    response = httpx.get(url, timeout=scaled(PROBE_TIMEOUT))
    return response.status_code, response.json() if response.content else {}
