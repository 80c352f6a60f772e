"""Helpers for tests of the router as a real process: its metrics, readiness and sessions."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.client import PCM16K, SessionResult, mimi_headers
from tests.integration.conftest import FIXTURES
from tests.procs import Service
from tests.stack import http_json, http_text, wait_until

EXPECTED = json.loads((FIXTURES / "ja-chotto-osoi-chushoku.expected.json").read_text("utf-8"))
EXPECTED_SEGMENTS = [s["result"] for s in EXPECTED["nict_v2_determined_segments"]]
V2_PROGRESSIVE = mimi_headers(
    "nict-asr", "ja", PCM16K, options="response_format=v2;progressive=true;temporary=true"
)


def metric(router: Service, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    text = http_text(f"http://127.0.0.1:{router.ports['http']}/metrics")
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def wait_metric(
    router: Service, name: str, value: float, timeout: float = 30, **labels: str
) -> None:
    """Wait until the metric reaches `value` (the router counts after the session ends)."""
    wait_until(
        lambda: metric(router, name, **labels) >= value,
        timeout,
        f"{name}{labels} did not reach {value}",
        interval=0.1,
    )


def readiness(router: Service) -> dict[str, Any]:
    return http_json(f"http://127.0.0.1:{router.ports['http']}/readiness")[1]


def busy_backend(router: Service) -> str:
    """The address of the (one) backend that has a session of this router now."""
    busy = {
        b["address"]
        for route in readiness(router)["routes"]
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
