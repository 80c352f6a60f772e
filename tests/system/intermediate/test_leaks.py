"""500 sessions mixing every fault leave every slot free and no task behind."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.support.audio import pattern
from tests.support.grpc_client import Outcome, recognize
from tests.support.http import readiness
from tests.support.stack import Stack
from tests.support.timing import eventually

SESSIONS = 500
CONCURRENCY = 40
CAPACITY = 4  # per engine; with five to seven engines up, 20-28 slots for 40 sessions at once


async def _poll(
    intermediate: Any, done: Callable[[dict[str, Any]], bool], within: float = 30
) -> dict[str, Any]:
    """/readiness's body once `done(body)`, or the last body once `within` passed (the
    caller's assertions then say what is wrong)."""
    body: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal body
        _, body = await readiness(intermediate)
        return done(body)

    with contextlib.suppress(TimeoutError):
        await eventually(reached, within=within, what="readiness", interval=0.2)
    return body


async def _one(intermediate: Any, i: int, rng: random.Random) -> Outcome | str:
    kind = rng.random()
    if kind < 0.1:  # the client goes away mid-session
        accepted = asyncio.Event()
        task = asyncio.create_task(
            recognize(intermediate, pattern(0.3), hold=asyncio.Event(), accepted=accepted)
        )
        await asyncio.wait(
            [task, asyncio.ensure_future(accepted.wait())],
            timeout=5,
            return_when=asyncio.FIRST_COMPLETED,
        )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return "cancelled"
    frames = rng.choice([1, 2, 3, 5])
    return await recognize(intermediate, pattern(0.1 * frames))


async def test_no_slot_and_no_task_leaks_after_500_faulty_sessions(stack: Stack) -> None:
    """After 500 sessions over every fault, /readiness shows every slot free and tasks at idle.

    Engines close (1011), drop (1006), hang, send garbage, refuse, freeze and die; clients
    leave mid-session; sessions beyond the slots time out waiting.
    """
    engines = [
        stack.engine_stub("normal", wait=False),
        stack.engine_stub("close1011", wait=False, close_after_frames=2),
        stack.engine_stub("abort", wait=False, close_after_frames=2, close_mode="abort"),
        stack.engine_stub("hang", wait=False, hang_after_frames=2),
        stack.engine_stub("garbage", wait=False, garbage_after_frames=2),
        stack.engine_stub("refuse", wait=False, refuse="true"),
        stack.engine_stub("frozen", wait=False),  # SIGSTOP, later SIGCONT, mid-run
        stack.engine_stub("killed", wait=False),  # SIGKILL mid-run
    ]
    frozen, killed = engines[-2:]
    intermediate = stack.intermediate(
        "im",
        engines,
        engine_capacity=CAPACITY,
        reply_timeout=1,
        checkout_timeout=0.5,
    )
    idle = await _poll(intermediate, lambda b: sum(e["state"] == "up" for e in b["engines"]) == 7)
    assert idle["engines"][5]["state"] == "starting"  # the refusing engine never comes up
    baseline = idle["tasks"]

    rng = random.Random(4)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def limited(i: int) -> Outcome | str:
        async with gate:
            if i == 150:
                frozen.signal(signal.SIGSTOP)
            elif i == 250:
                killed.proc.kill()
            elif i == 350:
                frozen.signal(signal.SIGCONT)
            return await _one(intermediate, i, rng)

    results = await asyncio.gather(*(limited(i) for i in range(SESSIONS)))
    codes = Counter(r if isinstance(r, str) else r.code.name for r in results)
    print(f"outcomes: {dict(codes)}; {baseline} tasks at idle")
    assert sum(codes.values()) == SESSIONS
    assert codes["OK"] > 0

    body = await _poll(
        intermediate,
        lambda b: (
            (b["busy_slots"], b["active_sessions"]) == (0, 0)
            and b["tasks"] <= baseline
            and b["engines"][6]["state"] == "up"
        ),
        within=20,
    )
    assert (body["busy_slots"], body["active_sessions"]) == (0, 0), body
    assert body["tasks"] <= baseline, f"{body['tasks']} tasks now, {baseline} at idle"
    states = [e["state"] for e in body["engines"]]
    assert states == ["up"] * 5 + ["starting", "up", "down"], body
    assert all(e["free"] == CAPACITY for e in body["engines"] if e["state"] == "up"), body
