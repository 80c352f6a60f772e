"""What an operator sees: metrics that count sessions right, one session's logs across every
tier, and one trace from the client through every hop."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.support.audio import FRAME, SECOND
from tests.support.client import mimi_headers, refusal, stream_session
from tests.support.http import readiness
from tests.support.metrics import metric
from tests.support.processes import Service, free_port
from tests.support.stack import Stack
from tests.support.timing import eventually, scaled

V2 = "response_format=v2;progressive=true"


def log_lines(service: Service, session_id: str) -> list[dict[str, Any]]:
    """Every log line of `service` about `session_id`; each must parse as JSON."""
    lines = []
    for raw in service.log_text().splitlines():
        if session_id in raw:
            lines.append(json.loads(raw))
    return lines


async def router_sees_healthy(router: Service, count: int) -> bool:
    _, body = await readiness(router)
    return (
        sum(route["healthy_backends"] for route in body["routes"] if route["language"] == "ja")
        >= 2 * count
    )


@pytest.mark.timeout(180)
async def test_metrics_and_logs_follow_a_refused_a_failed_over_and_a_normal_session(
    tmp_path: Path, sample: bytes
) -> None:
    """After one refused, one failed-over and one normal session, every tier counts exactly
    those, and the failed-over session's log lines in every tier carry its session id."""
    with Stack(tmp_path) as stack:
        engine_a = stack.engine_stub("engine-a")
        engine_b_port = free_port()
        a = stack.intermediate("intermediate-a", [engine_a])
        b = stack.intermediate("intermediate-b", [engine_b_port], wait=False)
        router = stack.router({"ja": [a, b]}, wait_healthy=False)
        endpoint = stack.endpoint(router)
        url = f"ws://127.0.0.1:{endpoint.ports['http']}/"
        await eventually(
            lambda: router_sees_healthy(router, 1), within=30, what="the router did not see A"
        )

        status, body, _ = await refusal(url, mimi_headers("nict-asr", "fr"))
        assert (status, body["error"]["code"]) == (400, "unsupported_language")

        # The session starts on A, the only healthy backend; B comes up; A's engine dies.
        first_segment = asyncio.Event()
        session = asyncio.create_task(
            stream_session(
                url,
                sample,
                mimi_headers("nict-asr", "ja", options=V2),
                frame_bytes=FRAME,
                realtime_bytes_per_second=SECOND,
                on_message=lambda m: (
                    first_segment.set() if m["status"] == "recog-in-progress" else None
                ),
            )
        )
        await asyncio.wait_for(first_segment.wait(), scaled(30))
        stack.engine_stub("engine-b", port=engine_b_port)
        await eventually(
            lambda: router_sees_healthy(router, 2), within=30, what="the router did not see B"
        )
        engine_a.signal(signal.SIGKILL)
        failed_over = await asyncio.wait_for(session, scaled(60))
        assert failed_over.close_code == 1000
        normal = await stream_session(url, sample, mimi_headers("nict-asr", "ja", options=V2))
        assert normal.close_code == 1000

        assert (
            await metric(
                endpoint,
                "kikimimi_endpoint_refusals_total",
                status="400",
                code="unsupported_language",
            )
            == 1
        )
        assert (
            await metric(
                endpoint,
                "kikimimi_endpoint_sessions_total",
                process="nict-asr",
                language="ja",
                outcome="ok",
            )
            == 2
        )
        assert await metric(router, "kikimimi_router_errors_total", code="NOT_FOUND") == 1
        assert (
            await metric(
                router, "kikimimi_router_sessions_total", route="nict-asr/ja", outcome="ok"
            )
            == 2
        )
        assert await metric(router, "kikimimi_router_failovers_total", route="nict-asr/ja") == 1
        assert await metric(a, "kikimimi_intermediate_sessions_total", outcome="engine_lost") == 1
        assert await metric(a, "kikimimi_intermediate_sessions_total", outcome="ok") == 0
        assert await metric(b, "kikimimi_intermediate_sessions_total", outcome="ok") == 2

        session_id = failed_over.messages[0]["session_id"]
        for service in (endpoint, router, a, b):
            lines = log_lines(service, session_id)
            assert lines, f"{service.name} logged nothing for the session"
            assert all(line["session_id"] == session_id for line in lines)
            summaries = [line for line in lines if line.get("summary")]
            assert len(summaries) == 1, f"{service.name}: one summary line per session"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver: what the services export arrives here, over real gRPC."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        {
                            "service": service,
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                        }
                    )
        self.arrived.set()
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, int]]:
    server = grpc.aio.server()
    receiver = Collector()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield receiver, port
    finally:
        await server.stop(grace=None)


@pytest.mark.timeout(120)
async def test_one_trace_runs_from_the_client_through_every_tier(
    tmp_path: Path, sample: bytes, collector: tuple[Collector, int]
) -> None:
    """With OTEL_* set, the client's traceparent is the root of one trace in which the
    endpoint, router and intermediate each record a span, each the child of the one before."""
    receiver, port = collector
    trace_id, client_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with Stack(tmp_path) as stack:
        stack.extra_env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        ja = stack.intermediate("intermediate-ja", [stack.engine_stub("engine-ja")])
        endpoint = stack.endpoint(stack.router({"ja": [ja]}))
        headers = mimi_headers("nict-asr", "ja") | {
            "traceparent": f"00-{trace_id}-{client_span}-01"
        }
        result = await stream_session(f"ws://127.0.0.1:{endpoint.ports['http']}/", sample, headers)
        assert result.close_code == 1000

        def spans_of_trace() -> dict[str, dict[str, Any]]:
            """Each tier's session span of the trace (FastAPI adds spans of its own)."""
            return {
                s["service"]: s
                for s in receiver.spans
                if s["trace_id"] == trace_id and s["name"].endswith(" session")
            }

        async with asyncio.timeout(30):
            while len(spans_of_trace()) < 3:
                receiver.arrived.clear()
                await receiver.arrived.wait()
    spans = spans_of_trace()
    assert spans["kikimimi-endpoint"]["parent"] == client_span
    assert spans["kikimimi-router"]["parent"] == spans["kikimimi-endpoint"]["span_id"]
    assert spans["kikimimi-intermediate"]["parent"] == spans["kikimimi-router"]["span_id"]
