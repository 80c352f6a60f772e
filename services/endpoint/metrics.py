"""Prometheus metrics of the endpoint. Label values are bounded: process and language
only for sessions the route table accepted, never a session id."""

from __future__ import annotations

from services.common.tier_metrics import TierMetrics

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics(TierMetrics):
    def __init__(self) -> None:
        super().__init__(
            "endpoint",
            sessions_help="Sessions ended after the upgrade, by process, language and outcome",
            session_labels=("process", "language", "outcome"),
            active_labels=("process",),
        )
        self.refusals = self.counter(
            "kikimimi_endpoint_refusals_total",
            "Requests refused before the upgrade, by HTTP status and error code",
            ["status", "code"],
        )
        self.abandoned_handshakes = self.counter(
            "kikimimi_endpoint_abandoned_handshakes_total",
            "Clients that left while the backend was being asked, before the upgrade",
        )
        self.first_result = self.histogram(
            "kikimimi_endpoint_first_result_seconds",
            "Time from the upgrade to the first result message",
            buckets=LATENCY_BUCKETS,
        )
        self.final_latency = self.histogram(
            "kikimimi_endpoint_final_latency_seconds",
            "Time from recog-break to recog-finished",
            buckets=LATENCY_BUCKETS,
        )
        self.audio_seconds = self.counter(
            "kikimimi_endpoint_audio_seconds_total",
            "Seconds of audio received (after normalisation to 16 kHz mono)",
            ["process"],
        )
