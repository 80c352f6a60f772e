"""The endpoint's side of RouteDirectory: RouterClient.list_routes has a deadline, and the demo's
config.json asks the router once per cache period. The router is an in-process fake here
(the seam this test controls: a router that hangs, and how often it is asked)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import httpx
import pytest

from services.common.pb import recognizer_pb2 as pb
from services.common.pb import recognizer_pb2_grpc as pb_grpc
from services.endpoint.backend import RouterClient
from services.endpoint.demo import create_demo_app

Context = grpc.aio.ServicerContext[pb.ListRoutesRequest, pb.ListRoutesResponse]


class FakeDirectory(pb_grpc.RouteDirectoryServicer):
    def __init__(self) -> None:
        self.calls = 0
        self.hang = False
        self.released = asyncio.Event()  # set at teardown: a hanging call ends

    async def ListRoutes(
        self, request: pb.ListRoutesRequest, context: Context
    ) -> pb.ListRoutesResponse:
        self.calls += 1
        if self.hang:
            await self.released.wait()
        return pb.ListRoutesResponse(
            routes=[
                pb.SupportedRoute(process="asr", language="ja"),
                pb.SupportedRoute(process="nict-asr", language="en"),
                pb.SupportedRoute(process="nict-asr", language="ja"),
            ]
        )


@dataclass
class Router:
    fake: FakeDirectory
    client: RouterClient


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    fake = FakeDirectory()
    server = grpc.aio.server()
    pb_grpc.add_RouteDirectoryServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = RouterClient(f"127.0.0.1:{port}", deadline=5)
    try:
        yield Router(fake, client)
    finally:
        fake.released.set()
        await client.close()
        await server.stop(grace=None)


async def test_a_router_that_does_not_answer_fails_the_listing_at_its_deadline(
    router: Router,
) -> None:
    """list_routes gives up with DEADLINE_EXCEEDED after its deadline, not later."""
    router.fake.hang = True
    async with asyncio.timeout(5):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await router.client.list_routes(deadline=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_config_json_is_the_listing_asked_once_per_cache_period(router: Router) -> None:
    """Two page loads: the same processes and languages, one ListRoutes call."""
    transport = httpx.ASGITransport(app=create_demo_app(router.client))
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        first = await client.get("/config.json", timeout=10)
        second = await client.get("/config.json", timeout=10)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == {"processes": {"asr": ["ja"], "nict-asr": ["en", "ja"]}}
    assert router.fake.calls == 1
