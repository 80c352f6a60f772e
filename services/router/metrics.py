"""Prometheus metrics of the router."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


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
        self.active = Gauge("kikimimi_router_active_sessions", "Sessions in progress", registry=r)
        self.errors = Counter(
            "kikimimi_router_errors_total",
            "Sessions ended with an error, by code",
            ["code"],
            registry=r,
        )
        self.retries = Counter(
            "kikimimi_router_retries_total", "Backends tried again at session start", registry=r
        )
        self.failovers = Counter(
            "kikimimi_router_failovers_total", "Sessions moved to another backend", registry=r
        )
        self.healthy_backends = Gauge(
            "kikimimi_router_healthy_backends", "Healthy backends per pool", ["pool"], registry=r
        )
        self.reloads = Counter(
            "kikimimi_router_route_table_reloads_total",
            "Route table reloads, by result",
            ["result"],
            registry=r,
        )
