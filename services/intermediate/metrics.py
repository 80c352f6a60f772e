"""Prometheus metrics of the intermediate (names per Prometheus conventions)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Counter(
            "kikimimi_intermediate_sessions_total",
            "Sessions ended, by outcome",
            ["outcome"],
            registry=r,
        )
        self.active = Gauge(
            "kikimimi_intermediate_active_sessions", "Sessions in progress", registry=r
        )
        self.slots = Gauge(
            "kikimimi_intermediate_pool_slots",
            "Engine slots by state (busy, free)",
            ["engine", "state"],
            registry=r,
        )
        self.engine_up = Gauge(
            "kikimimi_intermediate_engine_up",
            "1 when the engine is up, else 0",
            ["engine"],
            registry=r,
        )
        self.reconnects = Gauge(
            "kikimimi_intermediate_engine_reconnects",
            "Times the engine went down after being up",
            ["engine"],
            registry=r,
        )
        self.checkout_wait = Histogram(
            "kikimimi_intermediate_checkout_wait_seconds",
            "Time a session waited for an engine connection",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10),
            registry=r,
        )
        self.audio_seconds = Counter(
            "kikimimi_intermediate_audio_seconds_total",
            "Seconds of audio forwarded to engines",
            registry=r,
        )
