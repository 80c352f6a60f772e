"""What the intermediate tells kubelet and the router: /readiness and grpc.health.v1.

They answer two questions (docs/operations.md, "Intermediate"):
- `/readiness` (kubelet, the headless Service's DNS, the PDB): *can this pod serve?* An
  engine is up and the pod is not draining. A full pod is ready: taking it out of the
  Service would make the router forget its sessions and count it unavailable in the PDB.
- gRPC health `SERVING` (the router's choice of backend): *should new sessions come
  here now?* Ready **and** a free engine slot. A full pod says NOT_SERVING until a slot
  frees, so the router sends new sessions elsewhere while keeping its count of this one.

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
HEALTH_SERVICES = ("", grpc_util.RECOGNIZER_SERVICE)


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
        self._ready: bool | None = None  # the last readiness logged and counted
        self._sent: int | None = None  # the last gRPC health status set
        pool.on_change(self.changed)

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
        """Keep grpc.health.v1 SERVING exactly while the pod is ready with a free slot."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            ready, body = self.readiness()
            if ready != self._ready:
                if self._ready is not None:  # not the first status after start
                    self.metrics.readiness_changes.labels(str(ready).lower()).inc()
                self._ready = ready
                log.info(
                    "ready" if ready else f"not ready: {body['reason']}",
                    extra={"ready": ready, "free_slots": body["free_slots"]},
                )
            serving = ready and body["free_slots"] > 0
            status = grpc_util.SERVING if serving else grpc_util.NOT_SERVING
            if status != self._sent:
                for service in HEALTH_SERVICES:
                    await self.servicer.set(service, status)
                self._sent = status
                if ready:  # a full pod: one line when it fills up and one when a slot frees
                    log.info(
                        "serving" if serving else "not serving: no free engine slot",
                        extra={"serving": serving, "free_slots": body["free_slots"]},
                    )
