"""Every tier's session count and drain: one `SessionTracker` per process.

A tier wraps each session in `with tracker.session(key):` and calls `await tracker.drain()`
after its stop signal. The drain (docs/architecture.md, "Drain") refuses nothing by itself:
a tier checks `tracker.draining` where it admits sessions, and sessions in flight that
should end at the deadline wait for `tracker.expired`.

The session context is synchronous on purpose: a session's bookkeeping must run with no
`await` before it, or a second cancellation (grpc cancels a handler again when its peer
hangs up) can skip it and leak the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator

from prometheus_client import Gauge

log = logging.getLogger(__name__)


class SessionTracker:
    """Counts sessions in flight (by key, such as the endpoint's process) and drains them."""

    def __init__(
        self,
        *,
        drain_seconds: float,
        draining_gauge: Gauge,
        active_gauge: Gauge | None = None,
        grace_seconds: float = 2.0,
    ) -> None:
        self.drain_seconds = drain_seconds
        self.grace_seconds = grace_seconds
        self._draining_gauge = draining_gauge
        self._active_gauge = active_gauge
        self._by_key: Counter[str] = Counter()
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False
        self.expired = asyncio.Event()
        """Set when the drain deadline passed: sessions still running end themselves now."""

    @property
    def active(self) -> int:
        return sum(self._by_key.values())

    def by_key(self) -> dict[str, int]:
        return dict(self._by_key)

    def count(self, key: str = "") -> int:
        return self._by_key[key]

    @contextlib.contextmanager
    def session(self, key: str = "") -> Iterator[None]:
        """Count one session under `key` while the block runs (whatever way it ends)."""
        self._by_key[key] += 1
        self._idle.clear()
        if self._active_gauge is not None:
            self._active_gauge.inc()
        try:
            yield
        finally:
            self._by_key[key] -= 1
            if self._by_key[key] <= 0:
                del self._by_key[key]  # keys may be client strings: they must not pile up
            if self._active_gauge is not None:
                self._active_gauge.dec()
            if not self._by_key:
                self._idle.set()

    def start_draining(self) -> None:
        """From now on the tier refuses new sessions (it reads `draining`)."""
        if not self.draining:
            self.draining = True
            self._draining_gauge.set(1)
            log.info("draining", extra={"active_sessions": self.by_key()})

    async def drain(self) -> None:
        """Let sessions in flight end by themselves for up to `drain_seconds`; then set
        `expired` (each ends with its retryable error) and give them `grace_seconds` to say
        so. Returns when no session is left or the grace has passed too."""
        self.start_draining()
        if await self.wait_idle(self.drain_seconds):
            return
        log.warning("drain deadline passed", extra={"active_sessions": self.by_key()})
        self.expired.set()
        await self.wait_idle(self.grace_seconds)

    async def wait_idle(self, seconds: float) -> bool:
        """True once no session is in flight; False if `seconds` passed first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        return self._idle.is_set()
