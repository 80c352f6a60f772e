"""What the intermediate tells kubelet and the router: /readiness and grpc.health.v1.

One task applies the latest state whenever the pool or the drain may have changed it, so
the status a watcher ends up with is always the current one, never a stale update.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from services.common import grpc_util
from services.common.sessions import SessionTracker
from services.intermediate.metrics import Metrics, running_tasks
from services.intermediate.pool import EngineState, Pool

log = logging.getLogger("services.intermediate")

# The router watches the Recognizer service; "" is the whole server.
HEALTH_SERVICES = ("", "kikimimi.v1.Recognizer")


class HealthReporter:
    def __init__(
        self, pool: Pool, tracker: SessionTracker, servicer: Any, metrics: Metrics
    ) -> None:
        self.pool = pool
        self.tracker = tracker
        self.servicer = servicer
        self.metrics = metrics
        self._dirty = asyncio.Event()
        self._dirty.set()  # the first status after start is applied at once
        self._sent: int | None = None
        pool.listeners.append(self.changed)

    def changed(self) -> None:
        """Readiness may have changed: the sync task looks again."""
        self._dirty.set()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        engines = self.pool.snapshot()
        free = sum(e["free"] for e in engines)
        busy = sum(e["busy"] for e in engines)
        if self.tracker.draining:
            reason = "draining"
        elif not any(e["state"] == EngineState.UP for e in engines):
            reason = "no engine is up"
        elif free <= 0:
            reason = "no free engine slot"
        else:
            reason = ""
        body = {
            "ready": not reason,
            "reason": reason,
            "draining": self.tracker.draining,
            "free_slots": free,
            "busy_slots": busy,
            "active_sessions": self.tracker.active,
            "tasks": running_tasks(),
            "engines": engines,
        }
        return not reason, body

    async def sync_forever(self) -> None:
        """Keep grpc.health.v1 equal to readiness: SERVING exactly while /readiness is 200."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            ready, body = self.readiness()
            status = grpc_util.SERVING if ready else grpc_util.NOT_SERVING
            if status != self._sent:
                for service in HEALTH_SERVICES:
                    await self.servicer.set(service, status)
                if self._sent is not None:  # not the first status after start
                    self.metrics.readiness_changes.labels(str(ready).lower()).inc()
                self._sent = status
                log.info(
                    "ready" if ready else f"not ready: {body['reason']}",
                    extra={"ready": ready, "free_slots": body["free_slots"]},
                )
