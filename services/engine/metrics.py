"""Prometheus metrics of the engine, served on its own port at GET /metrics (plain HTTP,
beside the WebSocket upgrade, as the engine has no other port)."""

from __future__ import annotations

from services.common.tier_metrics import TierMetrics

OUTCOMES = ("ok", "client_closed", "connection_lost", "error")


class Metrics(TierMetrics):
    def __init__(self) -> None:
        super().__init__("engine", outcomes=OUTCOMES, drains=False)
        self.refused = self.counter(
            "kikimimi_engine_refused_total", "Connections refused at capacity"
        )
        self.audio_seconds = self.counter(
            "kikimimi_engine_audio_seconds_total", "Seconds of audio decoded"
        )
        self.decode_seconds = self.counter(
            "kikimimi_engine_decode_seconds_total",
            "Seconds sessions waited for decoding; its rate over the audio rate is the "
            "real-time factor",
        )
        self.decodes = self.counter(
            "kikimimi_engine_decodes_total",
            "Whisper decodes run, by kind (final: a determined segment; partial: a hypothesis)",
            ["kind"],
        )
        self.decode_batch_seconds = self.histogram(
            "kikimimi_engine_decode_batch_seconds",
            "Whisper: wall time of one decode batch, by kind",
            ["kind"],
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0),
        )
        self.partials_skipped = self.counter(
            "kikimimi_engine_partials_skipped_total",
            "Whisper: partial decodes that fell due but were not run (the engine was behind)",
        )
        self.real_time_factor = self.histogram(
            "kikimimi_engine_real_time_factor",
            "Per session: decoding time over audio duration",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0),
        )
        self.final_latency = self.histogram(
            "kikimimi_engine_final_latency_seconds",
            "Time from eof to the final segment",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
