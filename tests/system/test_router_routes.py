"""The route table of a running router: refusals, readiness, reloads, health and drain."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.pb import recognizer_pb2 as pb
from services.common.pb import recognizer_pb2_grpc as pb_grpc
from tests.support.audio import SECOND
from tests.support.client import mimi_headers, refusal, stream_session
from tests.support.http import base_url, get_json, get_json_blocking, readiness
from tests.support.metrics import metric, scrape
from tests.support.processes import Service
from tests.support.stack import Stack
from tests.support.timing import eventually, poll_until
from tests.system.router_helpers import (
    EXPECTED_SEGMENTS,
    V2_PROGRESSIVE,
    determined_segments,
    has_determined,
    readiness_now,
    wait_metric,
)

pytestmark = pytest.mark.slow


def label_names(line: str) -> set[str]:
    inside = line[line.index("{") + 1 : line.index("}")]
    return {pair.split("=")[0] for pair in inside.split(",") if pair}


@dataclass
class Routed:
    stack: Stack
    ja: Service
    en: Service
    router: Service
    url: str

    def write(self, routes: list[dict[str, Any]] | None = None) -> None:
        """Write a table (default: ja and en for both processes) and wait until it is served."""
        self.stack.write_routes({"ja": [self.ja], "en": [self.en]}, routes)
        wanted = {(p, r["language"]) for r in routes or [] for p in r["process"]} or {
            (p, lang) for p in ("asr", "nict-asr") for lang in ("ja", "en")
        }
        poll_until(
            lambda: (
                {(r["process"], r["language"]) for r in readiness_now(self.router)["routes"]}
                == wanted
            ),
            within=30,
            what="the router did not load the new table",
        )


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    with Stack(tmp_path_factory.mktemp("routes")) as stack:
        ja = stack.intermediate("intermediate-ja", [stack.engine_stub("engine-ja")])
        en = stack.intermediate("intermediate-en", [stack.engine_stub("engine-en")])
        router = stack.router({"ja": [ja], "en": [en]})
        endpoint = stack.endpoint(router)
        yield Routed(stack, ja, en, router, f"ws://127.0.0.1:{endpoint.ports['http']}/")


@pytest.fixture
def default_table(routed: Routed) -> Iterator[Routed]:
    routed.write()
    yield routed
    routed.write()


async def test_unknown_language_is_refused_with_the_supported_ones(routed: Routed) -> None:
    """A session for fr is refused before the upgrade with a 400 that lists en and ja."""
    status, body, _ = await refusal(routed.url, mimi_headers("nict-asr", "fr"))
    assert status == 400
    assert body["error"]["code"] == "unsupported_language"
    assert body["error"]["retryable"] is False
    assert "supported: en, ja" in body["error"]["message"]


async def test_readiness_lists_every_route_with_its_backends(routed: Routed) -> None:
    """GET /readiness is 200 and shows each route with its backend counts."""
    status, body = await readiness(routed.router)
    assert status == 200
    counts = {
        (r["process"], r["language"]): (r["backend_count"], r["healthy_backends"])
        for r in body["routes"]
    }
    assert counts == {(p, lang): (1, 1) for p in ("asr", "nict-asr") for lang in ("ja", "en")}


def test_router_reports_serving_over_grpc_health(routed: Routed) -> None:
    """grpc.health.v1 Check on the router's gRPC port answers SERVING."""
    with grpc.insecure_channel(f"127.0.0.1:{routed.router.ports['grpc']}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "kikimimi.v1.Recognizer"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_demo_route_listing_is_no_refused_session(default_table: Routed) -> None:
    """The page's config.json lists the table, and the router counts no session for it:
    no NOT_FOUND, no session ended (it asks ListRoutes, not starts that match no route)."""
    routed = default_table
    not_found = await metric(routed.router, "kikimimi_router_errors_total", code="NOT_FOUND")
    sessions = await metric(routed.router, "kikimimi_router_sessions_total")
    http = routed.url.replace("ws://", "http://", 1)
    status, body = await get_json(f"{http}demo/config.json")
    assert status == 200
    assert body == {"processes": {"asr": ["en", "ja"], "nict-asr": ["en", "ja"]}}
    assert (
        await metric(routed.router, "kikimimi_router_errors_total", code="NOT_FOUND") == not_found
    )
    assert await metric(routed.router, "kikimimi_router_sessions_total") == sessions


def list_routes(service: Service) -> list[tuple[str, str]]:
    """RouteDirectory.ListRoutes on the service's gRPC port, as (process, language) pairs."""
    with grpc.insecure_channel(f"127.0.0.1:{service.ports['grpc']}") as channel:
        reply = pb_grpc.RouteDirectoryStub(channel).ListRoutes(pb.ListRoutesRequest(), timeout=10)
        return [(r.process, r.language) for r in reply.routes]


def test_list_routes_follows_the_reloaded_table(default_table: Routed) -> None:
    """ListRoutes answers the table in use: a route written into the file is listed."""
    routed = default_table
    assert list_routes(routed.router) == [
        (p, lang) for p in ("asr", "nict-asr") for lang in ("en", "ja")
    ]
    routed.write([{"process": ["nict-asr"], "language": "ko", "pool": "ja"}])
    assert list_routes(routed.router) == [("nict-asr", "ko")]


def test_the_intermediate_has_no_route_directory(routed: Routed) -> None:
    """The intermediate serves Recognizer only: ListRoutes there is UNIMPLEMENTED."""
    with pytest.raises(grpc.RpcError) as info:
        list_routes(routed.ja)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_metrics_count_sessions_by_route_and_backend(routed: Routed, sample: bytes) -> None:
    """/metrics counts a session by route and by backend, healthy backends per route, no ids."""
    labels = {"route": "nict-asr/ja"}
    backend = f"127.0.0.1:{routed.ja.ports['grpc']}"
    ok = await metric(routed.router, "kikimimi_router_sessions_total", outcome="ok", **labels)
    on_ja = await metric(routed.router, "kikimimi_router_backend_sessions_total", backend=backend)
    result = await stream_session(routed.url, sample, V2_PROGRESSIVE)
    assert result.close_code == 1000
    await wait_metric(
        routed.router, "kikimimi_router_sessions_total", ok + 1, outcome="ok", **labels
    )
    assert (
        await metric(routed.router, "kikimimi_router_backend_sessions_total", backend=backend)
        == on_ja + 1
    )
    assert await metric(routed.router, "kikimimi_router_healthy_backends", **labels) == 1
    text = await scrape(routed.router)
    names = {name for line in text.splitlines() if "{" in line for name in label_names(line)}
    assert not [name for name in names if "session" in name]


@pytest.mark.usefixtures("default_table")
async def test_route_added_to_the_file_is_served_without_restart(
    routed: Routed, sample: bytes
) -> None:
    """A ko route written into the file serves ko sessions, the router process unchanged."""
    pid = routed.router.proc.pid
    headers = mimi_headers("nict-asr", "ko", options="response_format=v2;progressive=true")
    assert (await refusal(routed.url, headers))[0] == 400
    routes = [
        {"process": ["asr", "nict-asr"], "language": "ja", "pool": "ja"},
        {"process": ["nict-asr"], "language": "ko", "pool": "ja"},
    ]
    await asyncio.to_thread(routed.write, routes)  # write() waits, blocking, until served
    result = await stream_session(routed.url, sample, headers)
    assert result.close_code == 1000
    assert determined_segments(result) == EXPECTED_SEGMENTS
    assert routed.router.proc.pid == pid
    assert routed.router.proc.poll() is None


@pytest.mark.usefixtures("default_table")
async def test_dns_backend_is_resolved_into_its_addresses(routed: Routed, sample: bytes) -> None:
    """A pool given as dns:///localhost:port gets the resolved 127.0.0.1:port and serves ja."""
    port = routed.ja.ports["grpc"]
    path = routed.stack.tmp_path / "routes.yaml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        f'pools: {{ja: {{backends: ["dns:///localhost:{port}"]}}}}\n'
        "routes: [{process: nict-asr, language: ja, pool: ja}]\n"
    )
    tmp.replace(path)

    async def resolved() -> bool:
        routes = (await readiness(routed.router))[1]["routes"]
        healthy = {b["address"] for r in routes for b in r["backends"] if b["healthy"]}
        return healthy == {f"127.0.0.1:{port}"}

    await eventually(resolved, within=30, what="localhost was not resolved")
    result = await stream_session(routed.url, sample, V2_PROGRESSIVE)
    assert determined_segments(result) == EXPECTED_SEGMENTS


@pytest.mark.usefixtures("default_table")
async def test_malformed_file_keeps_the_old_table_and_says_why(
    routed: Routed, sample: bytes
) -> None:
    """A broken file is rejected (metric, readiness names the line) and ja is still served."""
    rejected = await metric(
        routed.router, "kikimimi_router_route_table_reloads_total", result="rejected"
    )
    path = routed.stack.tmp_path / "routes.yaml"
    path.write_text("pools:\n  ja: {backends: []}\nroutes: []\n")
    await wait_metric(
        routed.router, "kikimimi_router_route_table_reloads_total", rejected + 1, result="rejected"
    )
    assert await metric(routed.router, "kikimimi_router_route_table_ok") == 0
    error = (await readiness(routed.router))[1]["routes_file_error"]
    assert f"{path}:2: pools.ja.backends" in error
    result = await stream_session(routed.url, sample, V2_PROGRESSIVE)
    assert determined_segments(result) == EXPECTED_SEGMENTS


@pytest.mark.usefixtures("default_table")
async def test_reload_does_not_drop_a_session_in_flight(routed: Routed, sample: bytes) -> None:
    """Removing ja from the table mid-session lets that session finish; new ja ones are refused."""
    switched: list[bool] = []

    def on_message(message: dict[str, Any]) -> None:
        if not switched and has_determined(message):
            routed.write([{"process": ["asr", "nict-asr"], "language": "en", "pool": "en"}])
            switched.append(True)

    result = await stream_session(
        routed.url,
        sample,
        V2_PROGRESSIVE,
        realtime_bytes_per_second=2 * SECOND,
        on_message=on_message,
    )
    assert switched
    assert result.close_code == 1000
    assert determined_segments(result) == EXPECTED_SEGMENTS
    assert (await refusal(routed.url, V2_PROGRESSIVE))[0] == 400


async def test_sigterm_drains_sessions_in_flight(
    routed: Routed, sample: bytes, tmp_path: Path
) -> None:
    """SIGTERM: unready and NOT_SERVING at once, new sessions refused, the open one finished."""
    with Stack(tmp_path) as stack:
        router = stack.router({"ja": [routed.ja]})
        url = f"ws://127.0.0.1:{stack.endpoint(router).ports['http']}/"
        drained: list[int] = []
        health: list[int] = []

        def on_message(message: dict[str, Any]) -> None:
            if not drained and has_determined(message):
                router.signal(signal.SIGTERM)
                poll_until(
                    lambda: get_json_blocking(f"{base_url(router)}/readiness")[0] == 503,
                    within=10,
                    what="readiness did not fail",
                )
                with grpc.insecure_channel(f"127.0.0.1:{router.ports['grpc']}") as channel:
                    request = health_pb2.HealthCheckRequest(service="kikimimi.v1.Recognizer")
                    reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=10)
                    health.append(reply.status)
                drained.append(1)

        result = await stream_session(
            url, sample, V2_PROGRESSIVE, realtime_bytes_per_second=4 * SECOND, on_message=on_message
        )
        assert drained
        assert health == [health_pb2.HealthCheckResponse.NOT_SERVING]
        assert result.close_code == 1000
        assert determined_segments(result) == EXPECTED_SEGMENTS
        status, body, _ = await refusal(url, V2_PROGRESSIVE)
        assert status == 503
        assert body["error"]["retryable"] is True
        assert router.proc.wait(30) == 0
