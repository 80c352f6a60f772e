"""What the router tells its operators: /readiness (every route and backend) and the gauges
read at scrape time."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from services.common.http_server import health_app
from services.common.sessions import SessionTracker
from services.router.backends import BackendRegistry
from services.router.metrics import Metrics
from services.router.shadow import ShadowLauncher
from services.router.table import TableWatcher


class RouterStatus:
    def __init__(
        self,
        tables: TableWatcher,
        registry: BackendRegistry,
        tracker: SessionTracker,
        shadows: ShadowLauncher,
        metrics: Metrics,
    ) -> None:
        self.tables = tables
        self.registry = registry
        self.tracker = tracker
        self.shadows = shadows
        self.metrics = metrics

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready while a route table is loaded and not draining; the body shows every route."""
        routes = []
        for (process, language), route in sorted(self.tables.table.routes.items()):
            pool = self.registry.pools.get(route.pool)
            backends = list(pool.backends.values()) if pool else []
            routes.append(
                {
                    "process": process,
                    "language": language,
                    "pool": route.pool,
                    "shadow_pool": route.shadow_pool,
                    "shadow_fraction": route.shadow_fraction,
                    "backend_count": len(backends),
                    "healthy_backends": sum(b.healthy for b in backends),
                    "backends": [
                        {"address": b.address, "healthy": b.healthy, "sessions": b.outstanding}
                        for b in backends
                    ],
                }
            )
        reason = "draining" if self.tracker.draining else ""
        body = {
            "ready": not reason,
            "reason": reason,
            "routes_file": str(self.tables.path),
            "routes_file_error": self.tables.error,
            "active_sessions": self.tracker.active,
            "shadow_sessions": self.shadows.count,
            "routes": routes,
        }
        return not reason, body

    def update_gauges(self) -> None:
        self.metrics.healthy_backends.clear()
        self.metrics.backends.clear()
        for (process, language), route in self.tables.table.routes.items():
            pool = self.registry.pools.get(route.pool)
            label = (f"{process}/{language}", route.pool)
            self.metrics.healthy_backends.labels(*label).set(pool.healthy_count() if pool else 0)
            self.metrics.backends.labels(*label).set(len(pool.backends) if pool else 0)

    def http_app(self) -> Starlette:
        return health_app(self.readiness, self.metrics.registry, self.update_gauges)
