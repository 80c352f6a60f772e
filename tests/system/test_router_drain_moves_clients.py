"""Two routers behind one endpoint: a draining router gets no new session (issue 13 item 7).

The endpoint reaches the routers as one multi-address gRPC target, as it reaches the pods
of a headless Service through `dns:///`: it balances per stream over the routers whose
gRPC health says SERVING, so a router that starts draining (NOT_SERVING) stops getting new
sessions at once, instead of refusing its share of them with 503 until it exits.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import grpc_util
from tests.support.client import mimi_headers, stream_session
from tests.support.grpc_client import recognize
from tests.support.http import readiness
from tests.support.metrics import metric
from tests.support.processes import Service, free_port, start_service
from tests.support.stack import Stack
from tests.support.timing import eventually, scaled
from tests.system.router_helpers import address, wait_metric

pytestmark = pytest.mark.slow

SESSIONS = "kikimimi_router_sessions_total"
HEADERS = mimi_headers("nict-asr", "ja", options="response_format=v2")


def endpoint_over(stack: Stack, routers: list[Service]) -> str:
    """An endpoint whose router address lists every router; its WebSocket URL."""
    port = free_port()
    env = stack.extra_env | {
        "ENDPOINT_PORT": str(port),
        "ENDPOINT_ROUTER_ADDRESS": "ipv4:" + ",".join(map(address, routers)),
        "ENDPOINT_LOG_FORMAT": "json",
    }
    stack.services.append(start_service("endpoint", "services.endpoint", env, port, {"http": port}))
    return f"ws://127.0.0.1:{port}/"


async def wait_not_serving(router: Service) -> None:
    """Watch the router's gRPC health, as the endpoint's channel does, until NOT_SERVING."""
    async with grpc.aio.insecure_channel(address(router)) as channel:
        request = health_pb2.HealthCheckRequest(service=grpc_util.RECOGNIZER_SERVICE)
        watch = health_pb2_grpc.HealthStub(channel).Watch(request, timeout=10)
        async for reply in watch:
            if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                watch.cancel()
                return


async def sessions(url: str, count: int) -> list[int | None]:
    audio = os.urandom(8000)  # a quarter of a second
    results = await asyncio.gather(*(stream_session(url, audio, HEADERS) for _ in range(count)))
    return [r.close_code for r in results]


async def test_new_sessions_move_off_a_draining_router(tmp_path: Path) -> None:
    """Sessions spread over both routers; once one drains (a session still open on it),
    every new session goes to the other and succeeds; the drained router exits 0."""
    with Stack(tmp_path) as stack:
        ja = stack.intermediate("intermediate-ja", [stack.engine_stub("engine-ja")])
        draining, staying = stack.router({"ja": [ja]}), stack.router({"ja": [ja]})
        url = endpoint_over(stack, [draining, staying])

        # The endpoint's channel connects to both and checks their health first: until both
        # are READY, the first gets every session. A few rounds see both in use.
        for rounds in range(1, 6):
            assert await sessions(url, 4) == [1000] * 4

            async def counted(rounds: int = rounds) -> bool:
                return await metric(draining, SESSIONS) + await metric(staying, SESSIONS) >= (
                    4 * rounds
                )

            await eventually(counted, within=30, what="the routers did not count every session")
            if await metric(draining, SESSIONS) and await metric(staying, SESSIONS):
                break
        assert await metric(draining, SESSIONS) > 0, "the endpoint did not balance over both"
        assert await metric(staying, SESSIONS) > 0, "the endpoint did not balance over both"
        before = await metric(staying, SESSIONS)

        hold, accepted = asyncio.Event(), asyncio.Event()
        held = asyncio.create_task(  # keeps the draining router draining, not exited
            recognize(draining, b"\0" * 3200, hold=hold, accepted=accepted)
        )
        await asyncio.wait_for(accepted.wait(), scaled(15))
        draining.signal(signal.SIGTERM)
        await asyncio.wait_for(wait_not_serving(draining), scaled(10))
        assert (await readiness(draining))[0] == 503

        assert await sessions(url, 8) == [1000] * 8
        await wait_metric(staying, SESSIONS, before + 8)
        assert await metric(draining, SESSIONS, outcome="draining") == 0

        hold.set()
        assert (await asyncio.wait_for(held, scaled(15))).code == grpc.StatusCode.OK
        assert await asyncio.to_thread(draining.proc.wait, 30) == 0
