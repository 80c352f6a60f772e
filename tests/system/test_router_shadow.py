"""Shadow traffic on a running router: a ja pool mirrored to other pools."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.audio import SECOND
from tests.support.client import stream_session
from tests.support.http import readiness
from tests.support.metrics import metric
from tests.support.processes import Service
from tests.support.stack import Stack
from tests.support.timing import eventually
from tests.system.router_helpers import (
    EXPECTED_SEGMENTS,
    V2_PROGRESSIVE,
    determined_segments,
    wait_metric,
)

pytestmark = pytest.mark.slow

# Four times real time: the session lasts 1.6 s and the pipeline is never the bottleneck,
# so the final latency measures what happens after recog-break.
PACE = 4 * SECOND
SHADOW = "kikimimi_router_shadow_sessions_total"


@dataclass
class Shadowed:
    stack: Stack
    ja: list[Service]
    pools: dict[str, list[Service]]
    router: Service
    url: str

    async def route(self, shadow_pool: str | None = None, fraction: float = 1.0) -> None:
        """Route nict-asr/ja to the ja pool, mirrored to `shadow_pool`; wait until served."""
        route: dict[str, Any] = {"process": ["asr", "nict-asr"], "language": "ja", "pool": "ja"}
        if shadow_pool:
            route["shadow"] = {"pool": shadow_pool, "fraction": fraction}
        self.stack.write_routes(self.pools, [route])

        async def loaded() -> bool:
            return bool(
                (await readiness(self.router))[1]["routes"][0]["shadow_pool"] == shadow_pool
            )

        await eventually(loaded, within=30, what="the router did not load the new table")


@pytest.fixture(scope="module")
def shadowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shadowed]:
    with Stack(tmp_path_factory.mktemp("shadow")) as stack:
        ja = [stack.intermediate("intermediate-ja", [stack.engine_stub("engine-ja")])]
        # Byte mode: its text is "bytes=… sha256=…", never the sample's sentence.
        other = stack.intermediate(
            "intermediate-next", [stack.engine_stub("engine-next", segment_ms=1000)]
        )
        slow = stack.intermediate(
            "intermediate-slow", [stack.engine_stub("engine-slow", frame_latency_ms=300)]
        )
        pools = {"ja": ja, "next": [other], "slow": [slow]}
        router = stack.router(pools, shadow_finish_timeout=5, shadow_queue_seconds=3)
        endpoint = stack.endpoint(router)
        yield Shadowed(stack, ja, pools, router, f"ws://127.0.0.1:{endpoint.ports['http']}/")


async def test_shadow_that_answers_differently_is_counted_as_mismatch(
    shadowed: Shadowed, sample: bytes
) -> None:
    """A shadow with other text: the client's answer is the primary's, a mismatch is counted."""
    await shadowed.route("next")
    before = await metric(shadowed.router, SHADOW, result="mismatch")
    errors = await metric(shadowed.router, "kikimimi_router_shadow_word_errors_total")
    result = await stream_session(
        shadowed.url, sample, V2_PROGRESSIVE, realtime_bytes_per_second=PACE
    )
    assert result.close_code == 1000
    assert determined_segments(result) == EXPECTED_SEGMENTS
    await wait_metric(shadowed.router, SHADOW, before + 1, result="mismatch", route="nict-asr/ja")
    assert await metric(shadowed.router, "kikimimi_router_shadow_word_errors_total") > errors


async def test_shadow_does_not_slow_the_client(shadowed: Shadowed, sample: bytes) -> None:
    """The final result comes as fast with a shadow as without (medians within 100 ms)."""

    async def latencies() -> list[float]:
        results = [
            await stream_session(
                shadowed.url, sample, V2_PROGRESSIVE, realtime_bytes_per_second=PACE
            )
            for _ in range(5)
        ]
        assert [determined_segments(r) for r in results] == [EXPECTED_SEGMENTS] * 5
        return [r.final_latency for r in results]

    await shadowed.route(None)
    without = statistics.median(await latencies())
    await shadowed.route("next")
    with_shadow = statistics.median(await latencies())
    print(
        f"final latency median: {without * 1000:.1f} ms alone, {with_shadow * 1000:.1f} ms shadowed"
    )
    assert with_shadow - without < 0.1


async def test_slow_shadow_is_dropped_not_the_client(shadowed: Shadowed, sample: bytes) -> None:
    """A shadow 8 times slower than real time fails on its own; the client's answer is on time."""
    await shadowed.route("slow")
    failures = await metric(shadowed.router, SHADOW, result="failure")
    result = await stream_session(
        shadowed.url, sample, V2_PROGRESSIVE, realtime_bytes_per_second=PACE
    )
    assert determined_segments(result) == EXPECTED_SEGMENTS
    assert result.final_latency < 2
    await wait_metric(shadowed.router, SHADOW, failures + 1, result="failure", route="nict-asr/ja")
