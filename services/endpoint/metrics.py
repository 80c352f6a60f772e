"""Prometheus metrics of the endpoint. Label values are bounded: process and language
only for sessions the route table accepted, never a session id."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.active = Gauge(
            "kikimimi_endpoint_active_sessions", "Sessions in progress", ["process"], registry=r
        )
        self.draining = Gauge(
            "kikimimi_endpoint_draining",
            "1 from SIGTERM until exit: sessions still active then are running into the deadline",
            registry=r,
        )
        self.sessions = Counter(
            "kikimimi_endpoint_sessions_total",
            "Sessions ended after the upgrade, by process, language and outcome",
            ["process", "language", "outcome"],
            registry=r,
        )
        self.refusals = Counter(
            "kikimimi_endpoint_refusals_total",
            "Requests refused before the upgrade, by HTTP status and error code",
            ["status", "code"],
            registry=r,
        )
        self.abandoned_handshakes = Counter(
            "kikimimi_endpoint_abandoned_handshakes_total",
            "Clients that left while the backend was being asked, before the upgrade",
            registry=r,
        )
        self.first_result = Histogram(
            "kikimimi_endpoint_first_result_seconds",
            "Time from the upgrade to the first result message",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.final_latency = Histogram(
            "kikimimi_endpoint_final_latency_seconds",
            "Time from recog-break to recog-finished",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.audio_seconds = Counter(
            "kikimimi_endpoint_audio_seconds_total",
            "Seconds of audio received (after normalisation to 16 kHz mono)",
            ["process"],
            registry=r,
        )
