"""Summaries of one phase's session records."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bench.load import SessionRecord


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of `values`, None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def distribution(values: Sequence[float]) -> dict[str, Any]:
    return {
        "p50": _r(percentile(values, 50)),
        "p90": _r(percentile(values, 90)),
        "p99": _r(percentile(values, 99)),
        "max": _r(max(values) if values else None),
        "samples": len(values),
    }


def steady_latencies(records: Sequence[SessionRecord]) -> list[float]:
    """Samples of frames sent while every session streamed: no handshake under way."""
    streamed = [r for r in records if r.streamed_until]
    if not streamed:
        return []
    begin = max(r.started_at for r in records) + 0.5
    end = min(r.streamed_until for r in streamed)
    return [
        latency
        for r in records
        for sent, latency in zip(r.latency_sent_at, r.latencies_ms, strict=True)
        if begin <= sent <= end
    ]


def summarise(records: Sequence[SessionRecord]) -> dict[str, Any]:
    latencies = [x for r in records for x in r.latencies_ms]
    failed = [r for r in records if not r.ok]
    frames = sum(r.frames_sent for r in records)
    return {
        "sessions": len(records),
        "errors": len(failed),
        "error_kinds": dict(Counter(r.error for r in failed)),
        "frames_sent": frames,
        "latency_ms": distribution(latencies),
        # The same, only frames sent once every session had started (no handshakes).
        "steady_latency_ms": distribution(steady_latencies(records)),
        "frames_with_result": round(len(latencies) / frames, 3) if frames else 0.0,
        "handshake_ms": distribution([r.handshake_ms for r in records if r.handshake_ms]),
        "finish_ms": distribution([r.finish_ms for r in records if r.finish_ms is not None]),
        "send_lag_ms": distribution([r.send_lag_ms for r in records if r.frames_sent]),
    }
