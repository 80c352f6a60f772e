"""What every tier's Prometheus metrics have in common: one registry per process (so tests
can build several), and the session metrics each tier exports under its own prefix —
`kikimimi_<tier>_sessions_total` (sessions ended, by outcome), `kikimimi_<tier>_active_sessions`
(sessions in progress) and, for a tier that drains, `kikimimi_<tier>_draining`.

Label values stay bounded in every tier (outcomes, routes, pods; never a session id).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

DRAINING_HELP = (
    "1 from SIGTERM until exit: sessions still active then are running into the deadline"
)


class TierMetrics:
    """A tier's registry and session metrics; a tier's `Metrics` adds its own with
    `counter`, `gauge` and `histogram`."""

    def __init__(
        self,
        tier: str,
        *,
        sessions_help: str = "Sessions ended, by outcome",
        session_labels: Sequence[str] = ("outcome",),
        outcomes: Iterable[str] = (),
        active_labels: Sequence[str] = (),
        drains: bool = True,
    ) -> None:
        self.registry = CollectorRegistry()
        prefix = f"kikimimi_{tier}"
        self.sessions = self.counter(f"{prefix}_sessions_total", sessions_help, session_labels)
        for outcome in outcomes:
            self.sessions.labels(outcome)  # every outcome is exported from the start, at 0
        self.active = self.gauge(f"{prefix}_active_sessions", "Sessions in progress", active_labels)
        if drains:
            self.draining = self.gauge(f"{prefix}_draining", DRAINING_HELP)

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, documentation, list(labels), registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, documentation, list(labels), registry=self.registry)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float],
    ) -> Histogram:
        return Histogram(name, documentation, list(labels), buckets=buckets, registry=self.registry)
