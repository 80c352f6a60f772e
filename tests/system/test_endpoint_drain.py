"""Drain on a real SIGTERM to a real endpoint process: refuse new work, finish, then 1001."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.audio import FRAME, SECOND
from tests.support.client import mimi_headers, refusal, stream_session
from tests.support.http import get_json, get_text
from tests.support.processes import Service
from tests.support.stack import Stack
from tests.support.timing import eventually, scaled

OPTIONS = "response_format=v2;temporary=true;temporary_interval=100"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Service]]:
    with Stack(tmp_path_factory.mktemp("stack")) as stack:
        ja = stack.intermediate("im-ja", [stack.engine_stub("engine-ja")])
        yield stack, stack.router({"ja": [ja]})


def ws(endpoint: Service) -> str:
    return f"ws://127.0.0.1:{endpoint.ports['http']}/"


async def started_session(endpoint: Service, seconds: float) -> asyncio.Task[Any]:
    """A real-time session of `seconds`, returned once its first result arrived."""
    first = asyncio.Event()
    task = asyncio.create_task(
        stream_session(
            ws(endpoint),
            os.urandom(int(SECOND * seconds)),
            mimi_headers(options=OPTIONS),
            frame_bytes=FRAME,
            realtime_bytes_per_second=SECOND,
            on_message=lambda _: first.set(),
        )
    )
    await asyncio.wait_for(first.wait(), scaled(20))
    return task


async def exit_code(service: Service, within: float) -> int:
    return await asyncio.wait_for(asyncio.to_thread(service.proc.wait), scaled(within))


async def test_sigterm_lets_the_session_finish_and_refuses_new_ones(
    stack: tuple[Stack, Service],
) -> None:
    """After SIGTERM: readiness 503, new sessions 503 draining, the open session finishes."""
    endpoint = stack[0].endpoint(stack[1], drain_seconds=30)
    port = endpoint.ports["http"]
    session = await started_session(endpoint, 3.0)
    endpoint.signal(signal.SIGTERM)

    async def unready() -> bool:
        return (await get_json(f"http://127.0.0.1:{port}/readiness"))[0] == 503

    await eventually(unready, within=10, what="readiness did not fail")
    status, body, headers = await refusal(ws(endpoint), mimi_headers())
    assert (status, body["error"]["code"], body["error"]["retryable"]) == (503, "draining", True)
    assert "retry-after" in headers
    assert (await get_json(f"http://127.0.0.1:{port}/healthz"))[0] == 200  # alive while draining
    exported = await get_text(f"http://127.0.0.1:{port}/metrics")
    assert "kikimimi_endpoint_draining 1.0" in exported.splitlines()
    result = await asyncio.wait_for(session, 30)
    assert result.close_code == 1000
    assert result.finished
    assert await exit_code(endpoint, 20) == 0  # long before the 30 s deadline


async def test_drain_deadline_ends_sessions_with_1001(stack: tuple[Stack, Service]) -> None:
    """A session still running at the drain deadline gets error draining, then 1001 (not 1012)."""
    endpoint = stack[0].endpoint(stack[1], drain_seconds=1)
    session = await started_session(endpoint, 10.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    endpoint.signal(signal.SIGTERM)
    result = await asyncio.wait_for(session, 30)
    assert result.close_code == 1001
    assert [e["error"]["code"] for e in result.errors] == ["draining"]
    assert result.errors[0]["error"]["retryable"] is True
    assert result.messages[-1]["type"] == "error"
    assert 0.9 <= loop.time() - began < 8
    assert await exit_code(endpoint, 20) == 0


async def test_sigterm_when_idle_exits_at_once(stack: tuple[Stack, Service]) -> None:
    """With no session open, SIGTERM ends the process within seconds."""
    endpoint = stack[0].endpoint(stack[1], drain_seconds=30)
    endpoint.signal(signal.SIGTERM)
    assert await exit_code(endpoint, 10) == 0
