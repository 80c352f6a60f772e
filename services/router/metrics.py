"""Prometheus metrics of the router. Labels are bounded: routes, pools, backend addresses
(pods) and outcomes; never a session id."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Counter(
            "kikimimi_router_sessions_total",
            "Sessions ended, by route and outcome",
            ["route", "outcome"],
            registry=r,
        )
        self.backend_sessions = Counter(
            "kikimimi_router_backend_sessions_total",
            "Sessions a backend accepted (failover targets included), by route and backend",
            ["route", "backend"],
            registry=r,
        )
        self.active = Gauge("kikimimi_router_active_sessions", "Sessions in progress", registry=r)
        self.draining = Gauge(
            "kikimimi_router_draining",
            "1 from SIGTERM until exit: sessions still active then are running into the deadline",
            registry=r,
        )
        self.errors = Counter(
            "kikimimi_router_errors_total",
            "Sessions ended with an error, by gRPC code",
            ["code"],
            registry=r,
        )
        self.retries = Counter(
            "kikimimi_router_retries_total",
            "Backends tried again at session start, by route",
            ["route"],
            registry=r,
        )
        self.failovers = Counter(
            "kikimimi_router_failovers_total",
            "Sessions moved to another backend mid-session, by route",
            ["route"],
            registry=r,
        )
        self.healthy_backends = Gauge(
            "kikimimi_router_healthy_backends",
            "Healthy backends of each route's pool",
            ["route", "pool"],
            registry=r,
        )
        self.backends = Gauge(
            "kikimimi_router_backends",
            "Backends (healthy or not) of each route's pool",
            ["route", "pool"],
            registry=r,
        )
        self.reloads = Counter(
            "kikimimi_router_route_table_reloads_total",
            "Route table reloads, by result (applied, rejected)",
            ["result"],
            registry=r,
        )
        self.table_ok = Gauge(
            "kikimimi_router_route_table_ok",
            "1 when the route table file in use is the one on disk, 0 when the file on disk "
            "was rejected (the old table is kept)",
            registry=r,
        )
        self.shadow_sessions = Counter(
            "kikimimi_router_shadow_sessions_total",
            "Shadow sessions, by route and result (match, mismatch, failure, aborted)",
            ["route", "result"],
            registry=r,
        )
        self.shadow_word_errors = Counter(
            "kikimimi_router_shadow_word_errors_total",
            "Word (characters for ja) errors of shadows against primaries, by route",
            ["route"],
            registry=r,
        )
        self.shadow_reference_words = Counter(
            "kikimimi_router_shadow_reference_words_total",
            "Words (characters for ja) of the primaries' final texts compared, by route",
            ["route"],
            registry=r,
        )
        self.shadow_wer = Histogram(
            "kikimimi_router_shadow_word_error_rate",
            "Word error rate of each compared shadow session, by route",
            ["route"],
            buckets=(0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=r,
        )
