"""Prometheus metrics of the router. Labels are bounded: routes, pools, backend addresses
(pods) and outcomes; never a session id."""

from __future__ import annotations

from services.common.tier_metrics import TierMetrics


class Metrics(TierMetrics):
    def __init__(self) -> None:
        super().__init__(
            "router",
            sessions_help="Sessions ended, by route and outcome",
            session_labels=("route", "outcome"),
        )
        self.backend_sessions = self.counter(
            "kikimimi_router_backend_sessions_total",
            "Sessions a backend accepted (failover targets included), by route and backend",
            ["route", "backend"],
        )
        self.errors = self.counter(
            "kikimimi_router_errors_total", "Sessions ended with an error, by gRPC code", ["code"]
        )
        self.retries = self.counter(
            "kikimimi_router_retries_total",
            "Backends tried again at session start, by route",
            ["route"],
        )
        self.failovers = self.counter(
            "kikimimi_router_failovers_total",
            "Sessions moved to another backend mid-session, by route",
            ["route"],
        )
        self.healthy_backends = self.gauge(
            "kikimimi_router_healthy_backends",
            "Healthy backends of each route's pool",
            ["route", "pool"],
        )
        self.backends = self.gauge(
            "kikimimi_router_backends",
            "Backends (healthy or not) of each route's pool",
            ["route", "pool"],
        )
        self.reloads = self.counter(
            "kikimimi_router_route_table_reloads_total",
            "Route table reloads, by result (applied, rejected)",
            ["result"],
        )
        self.table_ok = self.gauge(
            "kikimimi_router_route_table_ok",
            "1 when the route table file in use is the one on disk, 0 when the file on disk "
            "was rejected (the old table is kept)",
        )
        self.shadow_sessions = self.counter(
            "kikimimi_router_shadow_sessions_total",
            "Shadow sessions, by route and result (match, mismatch, failure, aborted)",
            ["route", "result"],
        )
        self.shadow_word_errors = self.counter(
            "kikimimi_router_shadow_word_errors_total",
            "Word (characters for ja) errors of shadows against primaries, by route",
            ["route"],
        )
        self.shadow_reference_words = self.counter(
            "kikimimi_router_shadow_reference_words_total",
            "Words (characters for ja) of the primaries' final texts compared, by route",
            ["route"],
        )
        self.shadow_wer = self.histogram(
            "kikimimi_router_shadow_word_error_rate",
            "Word error rate of each compared shadow session, by route",
            ["route"],
            buckets=(0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
        )
