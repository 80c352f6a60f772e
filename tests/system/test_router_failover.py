"""Two ja backends: balancing, and failover without the client losing a segment."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.audio import SECOND
from tests.support.client import SessionResult, mimi_headers, stream_session
from tests.support.metrics import metric
from tests.support.processes import Service
from tests.support.stack import Stack
from tests.support.timing import eventually, poll_until
from tests.system.router_helpers import (
    EXPECTED_SEGMENTS,
    V2_PROGRESSIVE,
    address,
    busy_backend,
    determined_segments,
    has_determined,
    readiness_now,
    wait_metric,
)

pytestmark = pytest.mark.slow

# Twice real time: the session lasts about 3 s, and the kill lands after its first segment.
PACE = 2 * SECOND


class TwoBackends:
    """Two live ja backends (intermediate + its own engine_stub) behind a shared router.

    The router and endpoint live for the module; each test gets the survivors of the test
    before plus fresh backends, written into the route table (reloaded, not restarted).
    """

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.pairs: list[tuple[Service, Service]] = []  # (intermediate, engine), alive
        self.started = 0
        self.top_up()
        self.router = stack.router({"ja": self.intermediates})
        self.endpoint = stack.endpoint(self.router)
        self.url = f"ws://127.0.0.1:{self.endpoint.ports['http']}/"

    @property
    def intermediates(self) -> list[Service]:
        return [i for i, _ in self.pairs]

    def top_up(self) -> None:
        self.pairs = [
            (i, e) for i, e in self.pairs if i.proc.poll() is None and e.proc.poll() is None
        ]
        while len(self.pairs) < 2:
            self.started += 1
            engine = self.stack.engine_stub(f"engine-ja-{self.started}")
            self.pairs.append(
                (self.stack.intermediate(f"intermediate-ja-{self.started}", [engine]), engine)
            )

    def renew(self) -> None:
        """Two live backends in the route table, both healthy in the router."""
        self.top_up()
        self.stack.write_routes({"ja": self.intermediates})
        wanted = set(map(address, self.intermediates))
        poll_until(
            lambda: (
                {
                    b["address"]
                    for r in readiness_now(self.router)["routes"]
                    for b in r["backends"]
                    if b["healthy"]
                }
                == wanted
            ),
            within=30,
            what="the router did not switch to the new backends",
        )

    def kill_at_first_segment(
        self, victims: Callable[[str], list[Service]]
    ) -> tuple[list[str], Callable[[dict[str, Any]], None]]:
        """An on_message callback that SIGKILLs victims(busy backend) at the first segment."""
        killed: list[str] = []

        def on_message(message: dict[str, Any]) -> None:
            if not killed and has_determined(message):
                busy = busy_backend(self.router)
                for service in victims(busy):
                    service.proc.kill()
                killed.append(busy)

        return killed, on_message

    def intermediate_at(self, busy: str) -> Service:
        return next(i for i, _ in self.pairs if address(i) == busy)

    def engine_of(self, busy: str) -> Service:
        return next(e for i, e in self.pairs if address(i) == busy)


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoBackends]:
    with Stack(tmp_path_factory.mktemp("failover")) as stack:
        yield TwoBackends(stack)


@pytest.fixture
def two(backends: TwoBackends) -> TwoBackends:
    backends.renew()
    return backends


async def test_forty_sessions_split_evenly_over_two_backends(two: TwoBackends) -> None:
    """40 sessions at once go 20 ± 5 to each of the two ja backends."""

    async def counts() -> list[float]:
        return [
            await metric(two.router, "kikimimi_router_backend_sessions_total", backend=address(s))
            for s in two.intermediates
        ]

    async def all_counted() -> bool:
        return sum(await counts()) - sum(before) == 40

    before = await counts()
    headers = mimi_headers("nict-asr", "ja", options="response_format=v2")
    audio = os.urandom(SECOND // 2)
    results = await asyncio.gather(*(stream_session(two.url, audio, headers) for _ in range(40)))
    assert [r.close_code for r in results] == [1000] * 40
    await eventually(all_counted, within=30, what="the router counted no 40 sessions")
    split = [after - b for after, b in zip(await counts(), before, strict=True)]
    assert all(15 <= n <= 25 for n in split), split


async def failed_over_session(
    two: TwoBackends, sample: bytes, victims: Callable[[str], list[Service]]
) -> SessionResult:
    """A session whose `victims(busy backend)` are SIGKILLed at its first segment: it
    finished (close 1000) and the router counted its failover."""
    failovers = await metric(two.router, "kikimimi_router_failovers_total")
    killed, on_message = two.kill_at_first_segment(victims)
    result = await stream_session(
        two.url, sample, V2_PROGRESSIVE, realtime_bytes_per_second=PACE, on_message=on_message
    )
    assert killed, "no determined segment arrived before the end"
    assert result.close_code == 1000
    await wait_metric(two.router, "kikimimi_router_failovers_total", failovers + 1)
    return result


async def test_killed_intermediate_mid_session_loses_no_segment(
    two: TwoBackends, sample: bytes
) -> None:
    """SIGKILL of the serving intermediate after the first segment: every segment arrives once."""
    result = await failed_over_session(two, sample, lambda busy: [two.intermediate_at(busy)])
    assert determined_segments(result) == EXPECTED_SEGMENTS
    assert result.finished["response"][0]["result"] == EXPECTED_SEGMENTS[-1]


async def test_killed_engine_mid_session_loses_no_segment(two: TwoBackends, sample: bytes) -> None:
    """SIGKILL of the serving intermediate's engine after the first segment: nothing is lost."""
    result = await failed_over_session(two, sample, lambda busy: [two.engine_of(busy)])
    assert determined_segments(result) == EXPECTED_SEGMENTS


async def test_both_backends_killed_ends_with_a_retryable_error(
    two: TwoBackends, sample: bytes
) -> None:
    """With every backend of the pool killed mid-session, the client gets a retryable 1011."""
    killed, on_message = two.kill_at_first_segment(lambda busy: two.intermediates)
    result = await stream_session(
        two.url, sample, V2_PROGRESSIVE, realtime_bytes_per_second=PACE, on_message=on_message
    )
    assert killed
    assert result.close_code == 1011
    [error] = result.errors
    assert error["status"] == "error"
    assert error["error"]["retryable"] is True
    assert error["error"]["code"] == "backend_unavailable"
    assert determined_segments(result) == EXPECTED_SEGMENTS[:1]
