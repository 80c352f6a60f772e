"""Prometheus metrics of the intermediate (names per Prometheus conventions).

Session counters and histograms are updated as sessions end; the pool's state (slots,
engine states, reconnects) and the event loop's task count are read when /metrics is
scraped, so they can never drift from what /readiness shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.common.tier_metrics import TierMetrics
from services.intermediate.errors import OUTCOMES
from services.intermediate.pool import EngineState, Pool


class PoolCollector(Collector):
    """Reads the pool at scrape time (scrapes run on the event loop, like everything else)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        slots = GaugeMetricFamily(
            "kikimimi_intermediate_pool_slots",
            "Engine slots by state: busy (a session holds it), free (the engine is up), "
            "unavailable (the engine is not up); they sum to the capacity",
            labels=["engine", "state"],
        )
        idle = GaugeMetricFamily(
            "kikimimi_intermediate_pool_idle_connections",
            "Warm engine connections waiting for a session",
            labels=["engine"],
        )
        up = GaugeMetricFamily(
            "kikimimi_intermediate_engine_up", "1 when the engine is up, else 0", labels=["engine"]
        )
        state = GaugeMetricFamily(
            "kikimimi_intermediate_engine_state",
            "1 for the engine's current state (starting, up, down)",
            labels=["engine", "state"],
        )
        reconnects = CounterMetricFamily(
            "kikimimi_intermediate_engine_reconnects",
            "Times the engine came back up after being down",
            labels=["engine"],
        )
        failures = CounterMetricFamily(
            "kikimimi_intermediate_engine_connect_failures",
            "Engine connection attempts that failed (refused, timed out, no pong)",
            labels=["engine"],
        )
        for target in self.pool.targets:
            url = target.url
            free = target.free
            unavailable = target.settings.capacity - target.busy - free
            slots.add_metric([url, "busy"], target.busy)
            slots.add_metric([url, "free"], free)
            slots.add_metric([url, "unavailable"], unavailable)
            idle.add_metric([url], target.idle)
            up.add_metric([url], 1 if target.state == EngineState.UP else 0)
            for value in EngineState:
                state.add_metric([url, value.value], 1 if target.state == value else 0)
            reconnects.add_metric([url], target.reconnects)
            failures.add_metric([url], target.connect_failures)
        yield from (slots, idle, up, state, reconnects, failures)
        tasks = GaugeMetricFamily(
            "kikimimi_intermediate_event_loop_tasks",
            "asyncio tasks alive in the event loop (a leak shows as growth at idle)",
        )
        tasks.add_metric([], running_tasks())
        yield tasks


def running_tasks() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no running loop (a scrape outside the loop)
        return 0


class Metrics(TierMetrics):
    def __init__(self, pool: Pool) -> None:
        super().__init__("intermediate", outcomes=OUTCOMES)
        self.checkout_wait = self.histogram(
            "kikimimi_intermediate_checkout_wait_seconds",
            "Time a session waited for an engine connection (including failed waits)",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10),
        )
        self.audio_seconds = self.counter(
            "kikimimi_intermediate_audio_seconds_total", "Seconds of audio forwarded to engines"
        )
        self.readiness_changes = self.counter(
            "kikimimi_intermediate_readiness_changes_total",
            "Times /readiness changed after start-up, by the new state (capacity is not "
            "readiness: a full pod stays ready and only gRPC health says NOT_SERVING)",
            ["ready"],
        )
        for ready in ("true", "false"):
            self.readiness_changes.labels(ready)
        self.registry.register(PoolCollector(pool))
