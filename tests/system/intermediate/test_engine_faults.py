"""A real intermediate in front of a real engine_stub that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import signal
import time

import grpc

from tests.support.audio import pattern
from tests.support.grpc_client import accepted_session, recognize, wait_readiness
from tests.support.http import readiness
from tests.support.metrics import metric
from tests.support.stack import Stack
from tests.support.timing import scaled

# The budgets: defaults detect a dead or hung engine within 10 s; the manual check
# allows 15 s for SIGSTOP / SIGCONT.
DETECT = 10.0
RECOVER = 15.0


async def test_slow_start_is_unready_until_the_engine_is_up(stack: Stack) -> None:
    """While the engine loads, /readiness is 503 with the engine `starting`; then 200."""
    engine = stack.engine_stub("engine", wait=False, startup_delay=4)
    intermediate = stack.intermediate("im", [engine], wait=False, backoff_max=0.5)
    status, body = await readiness(intermediate)
    assert status == 503
    assert body["reason"] == "no engine is up"
    assert body["engines"][0]["state"] == "starting"
    _, body = await wait_readiness(intermediate, 200, within=30)
    assert body["engines"][0]["state"] == "up"
    assert body["free_slots"] == 64
    assert intermediate.proc.poll() is None  # unready, never dead


async def test_killed_engine_turns_readiness_503_then_back_to_200(stack: Stack) -> None:
    """A killed engine turns /readiness 503 within 10 s; restarted on its port, 200 again."""
    engine = stack.engine_stub("engine", wait=False)
    intermediate = stack.intermediate("im", [engine])
    engine.proc.kill()
    took, body = await wait_readiness(intermediate, 503, within=DETECT)
    assert body["engines"][0]["state"] == "down"
    print(f"killed engine detected in {took:.1f} s")
    stack.engine_stub("engine-again", wait=False, port=engine.ports["ws"])
    took, body = await wait_readiness(intermediate, 200, within=RECOVER)
    assert body["engines"][0]["state"] == "up"
    print(f"restarted engine up again in {took:.1f} s")


async def test_session_on_a_killed_engine_ends_unavailable(stack: Stack) -> None:
    """A session whose engine is killed mid-stream ends UNAVAILABLE (retryable)."""
    engine = stack.engine_stub("engine", wait=False)
    intermediate = stack.intermediate("im", [engine])
    session = await accepted_session(intermediate, pattern(0.5), hold=asyncio.Event())
    engine.proc.kill()
    outcome = await asyncio.wait_for(session, scaled(15))
    assert outcome.code == grpc.StatusCode.UNAVAILABLE, outcome.details


async def test_close_1011_mid_session_ends_unavailable(stack: Stack) -> None:
    """An engine that closes the session with 1011 ends it UNAVAILABLE; the engine stays up."""
    engine = stack.engine_stub("engine", wait=False, close_after_frames=3)
    intermediate = stack.intermediate("im", [engine])
    # Three frames, then the client waits: the engine closes after answering the third.
    outcome = await recognize(intermediate, pattern(0.3), hold=asyncio.Event())
    assert outcome.code == grpc.StatusCode.UNAVAILABLE, outcome.details
    assert (await readiness(intermediate))[0] == 200


async def test_hung_engine_ends_the_session_within_the_reply_timeout(stack: Stack) -> None:
    """An engine that stops answering ends the session UNAVAILABLE within the reply timeout."""
    engine = stack.engine_stub("engine", wait=False, hang_after_frames=3)
    intermediate = stack.intermediate("im", [engine], reply_timeout=1)
    outcome = await recognize(intermediate, pattern(0.3))  # three frames answered, eof never
    assert outcome.code == grpc.StatusCode.UNAVAILABLE, outcome.details
    assert "did not answer within 1 s" in outcome.details
    assert outcome.seconds < 1 + 3  # the timeout plus slack on a busy machine
    _, body = await wait_readiness(intermediate, 200, within=5)
    assert body["busy_slots"] == 0


async def test_an_engine_far_behind_but_answering_is_not_stuck(stack: Stack) -> None:
    """All audio at once to a slow engine: replies come long after the reply timeout, but
    each within it of the one before, so the session finishes."""
    engine = stack.engine_stub("engine", wait=False, frame_latency_ms=200)
    intermediate = stack.intermediate("im", [engine], reply_timeout=1)
    outcome = await recognize(intermediate, pattern(1.0))  # ten frames: the last ~2 s late
    assert outcome.code == grpc.StatusCode.OK, outcome.details
    assert outcome.seconds > 1.5


async def test_frozen_engine_turns_readiness_503_and_back(stack: Stack) -> None:
    """SIGSTOP turns /readiness 503 within 10 s; SIGCONT turns it 200 within 15 s."""
    engine = stack.engine_stub("engine", wait=False)
    intermediate = stack.intermediate("im", [engine])
    engine.signal(signal.SIGSTOP)
    try:
        took, body = await wait_readiness(intermediate, 503, within=DETECT)
        assert body["engines"][0]["state"] == "down"
        print(f"SIGSTOP detected in {took:.1f} s: {body['engines'][0]['reason']}")
    finally:
        engine.signal(signal.SIGCONT)
    took, _ = await wait_readiness(intermediate, 200, within=RECOVER)
    print(f"SIGCONT recovered in {took:.1f} s")
    assert (
        await metric(intermediate, "kikimimi_intermediate_readiness_changes_total", ready="false")
        == 1
    )
    outcome = await recognize(intermediate, pattern(0.5))
    assert outcome.code == grpc.StatusCode.OK, outcome.details


async def test_engine_ignoring_pings_is_not_up(stack: Stack) -> None:
    """An engine that accepts connections but never answers a ping is never reported up."""
    engine = stack.engine_stub("engine", ignore_pings="true")
    intermediate = stack.intermediate("im", [engine], wait=False, ping_timeout=0.3)
    deadline = time.monotonic() + 2  # several probes: each waits 0.3 s for a pong
    while time.monotonic() < deadline:  # it must *stay* unready: a duration, not an event
        status, body = await readiness(intermediate)
        assert status == 503, body
        await asyncio.sleep(0.2)
    assert body["engines"][0]["state"] == "starting"
    assert "no pong" in body["engines"][0]["reason"]


async def test_garbage_ends_the_session_internal(stack: Stack) -> None:
    """An engine that replies with something that is not JSON ends the session INTERNAL."""
    engine = stack.engine_stub("engine", wait=False, garbage_after_frames=2)
    intermediate = stack.intermediate("im", [engine])
    # Three frames, then the client waits: the third reply is garbage.
    outcome = await recognize(intermediate, pattern(0.3), hold=asyncio.Event())
    assert outcome.code == grpc.StatusCode.INTERNAL, outcome.details
    assert "non-JSON" in outcome.details
    _, body = await wait_readiness(intermediate, 200, within=5)
    assert body["busy_slots"] == 0
