"""Prometheus metrics of the engine, served on its own port at GET /metrics (plain HTTP,
beside the WebSocket upgrade, as the engine has no other port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = ("ok", "client-closed", "connection-lost", "error")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Counter(
            "kikimimi_engine_sessions_total", "Sessions ended, by outcome", ["outcome"], registry=r
        )
        for outcome in OUTCOMES:
            self.sessions.labels(outcome)
        self.active = Gauge("kikimimi_engine_active_sessions", "Sessions in progress", registry=r)
        self.refused = Counter(
            "kikimimi_engine_refused_total", "Connections refused at capacity", registry=r
        )
        self.audio_seconds = Counter(
            "kikimimi_engine_audio_seconds_total", "Seconds of audio decoded", registry=r
        )
        self.decode_seconds = Counter(
            "kikimimi_engine_decode_seconds_total",
            "Seconds sessions waited for decoding; its rate over the audio rate is the "
            "real-time factor",
            registry=r,
        )
        self.decodes = Counter(
            "kikimimi_engine_decodes_total",
            "Whisper decodes run, by kind (final: a determined segment; partial: a hypothesis)",
            ["kind"],
            registry=r,
        )
        self.decode_batch_seconds = Histogram(
            "kikimimi_engine_decode_batch_seconds",
            "Whisper: wall time of one decode batch, by kind",
            ["kind"],
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0),
            registry=r,
        )
        self.partials_skipped = Counter(
            "kikimimi_engine_partials_skipped_total",
            "Whisper: partial decodes that fell due but were not run (the engine was behind)",
            registry=r,
        )
        self.real_time_factor = Histogram(
            "kikimimi_engine_real_time_factor",
            "Per session: decoding time over audio duration",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0),
            registry=r,
        )
        self.final_latency = Histogram(
            "kikimimi_engine_final_latency_seconds",
            "Time from eof to the final segment",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
