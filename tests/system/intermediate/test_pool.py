"""The pool with real engines: capacity, several engines, resampling, health, metrics, drain."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from typing import Any

import grpc
import numpy as np
import soxr
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import grpc_util
from tests.support.audio import FRAME, pattern
from tests.support.grpc_client import (
    accepted_session,
    recognize,
    wait_engines_up,
    wait_readiness,
)
from tests.support.http import readiness
from tests.support.metrics import metric, metric_value, scrape
from tests.support.processes import Service
from tests.support.stack import Stack
from tests.support.timing import eventually, scaled

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def wait_health(intermediate: Service, status: int, within: float = 5) -> None:
    """Watch grpc.health.v1 of the Recognizer, as the router does, until it says `status`."""
    address = f"127.0.0.1:{intermediate.ports['grpc']}"
    async with grpc.aio.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=grpc_util.RECOGNIZER_SERVICE)
        watch = health_pb2_grpc.HealthStub(channel).Watch(request, timeout=scaled(within))
        async for reply in watch:
            if reply.status == status:
                watch.cancel()
                return
    raise AssertionError(f"gRPC health never said {status}")


async def test_full_pool_stays_ready_and_new_sessions_fail_resource_exhausted(
    stack: Stack,
) -> None:
    """With every slot busy /readiness stays 200 (the pod can serve: kubelet keeps it in the
    Service, the PDB counts it available), gRPC health says NOT_SERVING (the router sends it
    no new session), and a new session waits, then RESOURCE_EXHAUSTED (issue 13 item 6)."""
    engine = stack.engine_stub("engine", wait=False, capacity=2)
    intermediate = stack.intermediate("im", [engine], engine_capacity=2, checkout_timeout=1)
    hold = asyncio.Event()
    accepted = [asyncio.Event(), asyncio.Event()]
    held = [
        asyncio.create_task(recognize(intermediate, pattern(0.2), hold=hold, accepted=event))
        for event in accepted
    ]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in accepted)), scaled(15))
    status, body = await readiness(intermediate)
    assert (status, body["reason"], body["busy_slots"], body["free_slots"]) == (200, "", 2, 0)
    await wait_health(intermediate, NOT_SERVING)
    refused = await recognize(intermediate, pattern(0.2))
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.details
    assert refused.seconds >= 1
    hold.set()
    assert all(
        o.code == grpc.StatusCode.OK
        for o in await asyncio.wait_for(asyncio.gather(*held), scaled(15))
    )
    await wait_health(intermediate, SERVING)
    assert (await readiness(intermediate))[0] == 200


async def test_pool_never_opens_more_connections_than_the_engine_serves(stack: Stack) -> None:
    """Many racing sessions against an engine that refuses beyond its capacity: no refusal."""
    # Listening before the intermediate starts: a refused connect would count as a failure.
    engine = stack.engine_stub("engine", capacity=3, frame_latency_ms=5)
    intermediate = stack.intermediate(
        "im", [engine], engine_capacity=3, idle_connections=2, checkout_timeout=10
    )
    outcomes = await asyncio.gather(*(recognize(intermediate, pattern(0.3)) for _ in range(24)))
    assert Counter(o.code for o in outcomes) == {grpc.StatusCode.OK: 24}
    assert (
        await metric(
            intermediate,
            "kikimimi_intermediate_engine_connect_failures_total",
            engine=f"ws://127.0.0.1:{engine.ports['ws']}",
        )
        == 0
    )
    assert "refused" not in engine.log_text()


async def test_sessions_spread_over_several_engines(stack: Stack) -> None:
    """Sessions one after another are spread over every engine of the intermediate."""
    engines = [stack.engine_stub(f"engine{i}", wait=False) for i in range(3)]
    intermediate = stack.intermediate("im", engines)
    await wait_engines_up(intermediate, 3)
    backends = [(await recognize(intermediate, pattern(0.2))).backend for _ in range(6)]
    assert Counter(backends) == {f"im/ws://127.0.0.1:{e.ports['ws']}": 2 for e in engines}


async def test_one_engine_down_leaves_the_others_serving(stack: Stack) -> None:
    """With one of two engines killed, /readiness stays 200 and sessions go to the other."""
    dead, alive = stack.engine_stub("dead", wait=False), stack.engine_stub("alive", wait=False)
    intermediate = stack.intermediate("im", [dead, alive])
    await wait_engines_up(intermediate, 2)
    dead.proc.kill()

    async def noticed() -> dict[str, Any] | None:
        status, body = await readiness(intermediate)
        assert status == 200, body  # ready all along
        return body if body["engines"][0]["state"] == "down" else None

    body = await eventually(noticed, within=10, what="the pool did not notice the dead engine")
    assert [e["state"] for e in body["engines"]] == ["down", "up"]
    outcomes = [await recognize(intermediate, pattern(0.2)) for _ in range(3)]
    assert {(o.code, o.backend) for o in outcomes} == {
        (grpc.StatusCode.OK, f"im/ws://127.0.0.1:{alive.ports['ws']}")
    }


async def test_audio_is_resampled_to_the_engine_rate(stack: Stack) -> None:
    """16 kHz audio reaches an 8 kHz engine resampled: half the bytes, the same duration."""
    engine = stack.engine_stub("engine", wait=False, sample_rate=8000)
    intermediate = stack.intermediate("im", [engine], engine_sample_rate=8000)
    rng = np.random.default_rng(1)
    pcm = (rng.standard_normal(16000) * 3000).astype("<i2")
    outcome = await recognize(intermediate, pcm.tobytes(), frame=FRAME)
    assert outcome.code == grpc.StatusCode.OK, outcome.details
    expected = soxr.resample(pcm, 16000, 8000, quality="HQ").astype("<i2").tobytes()
    assert len(expected) == 16000
    finished = outcome.finished
    n = int(finished.text.split()[0].removeprefix("bytes="))
    assert abs(n - 16000) <= 2 * 8  # soxr's streaming and one-shot lengths differ by a few samples
    assert abs(finished.words[-1].end_ms - 1000) <= 2


async def test_health_watch_follows_readiness(stack: Stack) -> None:
    """grpc.health.v1 Watch of the Recognizer follows readiness: a dead engine turns both off."""
    engine = stack.engine_stub("engine", wait=False)
    intermediate = stack.intermediate("im", [engine])
    address = f"127.0.0.1:{intermediate.ports['grpc']}"
    async with grpc.aio.insecure_channel(address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="kikimimi.v1.Recognizer"), timeout=30
        )
        first = await asyncio.wait_for(watch.read(), scaled(10))
        assert first.status == SERVING
        engine.proc.kill()
        changed = await asyncio.wait_for(watch.read(), scaled(10))
        assert changed.status == NOT_SERVING
        assert (await readiness(intermediate))[0] == 503
        watch.cancel()


async def test_metrics_count_a_normal_and_a_failed_session(stack: Stack) -> None:
    """After one good and one garbage session, /metrics counts each outcome once, slots freed."""
    good = stack.engine_stub("good", wait=False)
    intermediate = stack.intermediate("im", [good], engine_capacity=4)
    # The router cancels the call as soon as it has `finished`: still an `ok` session.
    ok = await recognize(intermediate, pattern(0.3), leave_after_finished=True)
    assert ok.code == grpc.StatusCode.OK
    assert ok.responses[-1].HasField("finished")
    url = f"ws://127.0.0.1:{good.ports['ws']}"
    # The same intermediate again, now in front of an engine that replies with garbage.
    good.stop()
    await wait_readiness(intermediate, 503, within=10)
    stack.engine_stub("garbage", wait=False, port=good.ports["ws"], garbage_after_frames=0)
    await wait_readiness(intermediate, 200, within=15)
    bad = await recognize(intermediate, pattern(0.3), frame=len(pattern(0.3)), hold=asyncio.Event())
    assert bad.code == grpc.StatusCode.INTERNAL
    await wait_readiness(intermediate, 200, within=5)
    samples = await scrape(intermediate)
    name = "kikimimi_intermediate_sessions_total"
    assert metric_value(samples, name, outcome="ok") == 1
    assert metric_value(samples, name, outcome="engine_protocol_error") == 1
    assert metric_value(samples, name, outcome="engine_lost") == 0
    assert metric_value(samples, "kikimimi_intermediate_checkout_wait_seconds_count") == 2
    assert metric_value(samples, "kikimimi_intermediate_active_sessions") == 0
    assert metric_value(samples, "kikimimi_intermediate_pool_slots", engine=url, state="busy") == 0
    assert metric_value(samples, "kikimimi_intermediate_pool_slots", engine=url, state="free") == 4
    assert metric_value(samples, "kikimimi_intermediate_engine_up", engine=url) == 1
    assert metric_value(samples, "kikimimi_intermediate_engine_reconnects_total", engine=url) == 1
    assert metric_value(samples, "kikimimi_intermediate_audio_seconds_total") == 0.6


async def test_drain_finishes_sessions_in_flight_and_refuses_new_ones(stack: Stack) -> None:
    """On SIGTERM /readiness turns 503 at once, new sessions are UNAVAILABLE, old ones finish."""
    engine = stack.engine_stub("engine", wait=False)
    intermediate = stack.intermediate("im", [engine])
    hold = asyncio.Event()
    session = await accepted_session(intermediate, pattern(0.2), hold)
    intermediate.signal(signal.SIGTERM)
    _, body = await wait_readiness(intermediate, 503, within=5)
    assert body["reason"] == "draining"
    refused = await recognize(intermediate, pattern(0.2))
    assert refused.code == grpc.StatusCode.UNAVAILABLE, refused.details
    hold.set()
    assert (await asyncio.wait_for(session, scaled(15))).code == grpc.StatusCode.OK
    assert await asyncio.to_thread(intermediate.proc.wait, scaled(15)) == 0
