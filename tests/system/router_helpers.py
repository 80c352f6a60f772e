"""Helpers for tests of the router as a real process: its readiness, metrics and sessions."""

from __future__ import annotations

from typing import Any

from tests.support.audio import expected
from tests.support.client import PCM16K, SessionResult, mimi_headers
from tests.support.http import base_url, get_json_blocking
from tests.support.metrics import metric
from tests.support.processes import Service
from tests.support.timing import eventually

EXPECTED_SEGMENTS = [s["result"] for s in expected()["nict_v2_determined_segments"]]
V2_PROGRESSIVE = mimi_headers(
    "nict-asr", "ja", PCM16K, options="response_format=v2;progressive=true;temporary=true"
)


async def wait_metric(
    service: Service, name: str, value: float, within: float = 30, **labels: str
) -> None:
    """Wait until the metric reaches `value` (the router counts after the session ends)."""

    async def reached() -> bool:
        return await metric(service, name, **labels) >= value

    await eventually(reached, within=within, what=f"{name}{labels} did not reach {value}")


def readiness_now(router: Service) -> dict[str, Any]:
    """The router's /readiness body, blocking: for synchronous fixtures and for `on_message`
    callbacks, which act before the session's next message on purpose."""
    return get_json_blocking(f"{base_url(router)}/readiness")[1]


def busy_backend(router: Service) -> str:
    """The address of the (one) backend that has a session of this router now (blocking)."""
    busy = {
        b["address"]
        for route in readiness_now(router)["routes"]
        for b in route["backends"]
        if b["sessions"] > 0
    }
    assert len(busy) == 1, f"expected one busy backend, got {busy}"
    return busy.pop()


def address(service: Service) -> str:
    return f"127.0.0.1:{service.ports['grpc']}"


def has_determined(message: dict[str, Any]) -> bool:
    return message.get("status") == "recog-in-progress" and any(
        entry.get("determined") for entry in message.get("response", [])
    )


def determined_segments(result: SessionResult) -> list[str]:
    return [
        entry["result"]
        for m in result.messages
        if m.get("status") == "recog-in-progress"
        for entry in m["response"]
        if entry.get("determined")
    ]
