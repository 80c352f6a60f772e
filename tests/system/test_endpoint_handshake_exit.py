"""A client that leaves while the endpoint waits for the backend's `accepted` (issue 13, item 10).

The intermediate is stopped (SIGSTOP) after the router saw it healthy, so a handshake waits
for an `accepted` that does not come. Its client then goes away: the endpoint must cancel
the router stream at once, end the session with its summary line and metric, and once the
intermediate runs again no engine slot may stay busy for the client who left.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.client import mimi_headers, stream_session
from tests.support.http import readiness
from tests.support.metrics import metric
from tests.support.processes import Service
from tests.support.stack import Stack
from tests.support.timing import eventually


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service]]:
    with Stack(tmp_path_factory.mktemp("stack")) as stack:
        intermediate = stack.intermediate("im-ja", [stack.engine_stub("engine-ja")])
        endpoint = stack.endpoint(stack.router({"ja": [intermediate]}, accept_timeout=30))
        yield endpoint, intermediate


async def handshakes_in_progress(endpoint: Service) -> dict[str, Any]:
    _, body = await readiness(endpoint)
    return dict(body["active_sessions"])


def summaries(endpoint: Service) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in endpoint.log_text().splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("message") == "session summary"]


async def raw_upgrade(port: int, headers: dict[str, str]) -> asyncio.StreamWriter:
    """Send a WebSocket upgrade request and return without reading the answer."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [
        "GET / HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    return writer


async def test_a_client_leaving_during_the_accept_wait_is_ended_and_frees_its_place(
    services: tuple[Service, Service],
) -> None:
    endpoint, intermediate = services
    port = endpoint.ports["http"]
    intermediate.signal(signal.SIGSTOP)
    try:
        leaver = await raw_upgrade(port, mimi_headers())

        async def reached_the_backend() -> bool:
            return await handshakes_in_progress(endpoint) == {"nict-asr": 1}

        await eventually(
            reached_the_backend, within=10, what="the handshake did not reach the backend"
        )
        leaver.close()
        await leaver.wait_closed()

        # Long before any accept timeout (15 s, 30 s): the endpoint saw the client go.
        async def released() -> bool:
            return await handshakes_in_progress(endpoint) == {}

        await eventually(released, within=5, what="the abandoned handshake still counts")
    finally:
        intermediate.signal(signal.SIGCONT)
    assert await metric(endpoint, "kikimimi_endpoint_abandoned_handshakes_total") == 1
    gone = [s for s in summaries(endpoint) if s["outcome"] == "client_gone"]
    assert [(s["transport"], s["mimi_process"], s["language"]) for s in gone] == [
        ("websocket", "nict-asr", "ja")
    ]
    url = f"ws://127.0.0.1:{port}/"
    result = await stream_session(url, os.urandom(32000), mimi_headers(), within=20)
    assert result.close_code == 1000
    assert result.finished

    async def slot_free() -> bool:
        return await metric(intermediate, "kikimimi_intermediate_active_sessions") == 0

    await eventually(slot_free, within=10, what="an engine slot stayed busy")
