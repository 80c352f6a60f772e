"""The engine connection pool (DESIGN.md §5).

Per engine target: a capacity (sessions at once — pre-opened connections count against
it, so the pool never holds more connections than the engine serves) and a number of
warm idle connections. A maintainer task per target keeps the idle connections topped up,
pings them, marks the engine down when a ping or a connect fails, and reconnects with
exponential backoff and jitter. Sessions check a connection out for their whole life
(engine connections serve one session each) and release it at the end, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, WebSocketException
from websockets.protocol import State

from services.intermediate.errors import NoEngineUp, PoolExhausted

log = logging.getLogger(__name__)

# Engine replies are small JSON; 1 MiB is vosk-server's own frame limit.
MAX_ENGINE_MESSAGE = 1024 * 1024


class EngineState(StrEnum):
    STARTING = "starting"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class PoolSettings:
    capacity: int
    idle_connections: int
    connect_timeout: float
    ping_interval: float
    ping_timeout: float
    backoff_initial: float
    backoff_max: float


class Backoff:
    """Exponential backoff with full jitter, capped."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial, self.cap, self.attempt = initial, cap, 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.initial * 2**self.attempt)
        self.attempt += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


class EngineTarget:
    """One engine: its state, its warm connections and its busy slots."""

    def __init__(self, url: str, settings: PoolSettings, on_change: Callable[[], None]) -> None:
        self.url = url
        self.settings = settings
        self.state = EngineState.STARTING
        self.reason = "connecting"
        self.busy = 0
        self.reconnects = 0
        self.opening = 0  # connections the maintainer is opening: slots spoken for
        self._idle: deque[ClientConnection] = deque()
        self._on_change = on_change
        self._kick = asyncio.Event()

    @property
    def free(self) -> int:
        return self.settings.capacity - self.busy - self.opening

    @property
    def idle(self) -> int:
        return len(self._idle)

    def snapshot(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "state": self.state.value,
            "reason": self.reason if self.state != EngineState.UP else "",
            "capacity": self.settings.capacity,
            "busy": self.busy,
            "free": self.free if self.state == EngineState.UP else 0,
            "idle_connections": self.idle,
        }

    def _set_state(self, state: EngineState, reason: str) -> None:
        if state != self.state:
            log.log(
                logging.INFO if state == EngineState.UP else logging.WARNING,
                "engine %s is %s",
                self.url,
                state.value,
                extra={"engine": self.url, "engine_state": state.value, "reason": reason},
            )
            if state == EngineState.DOWN and self.state == EngineState.UP:
                self.reconnects += 1
        self.state, self.reason = state, reason
        self._on_change()

    def mark_down(self, reason: str) -> None:
        self._set_state(EngineState.DOWN, reason)
        self._close_idle()
        self._kick.set()

    def kick(self) -> None:
        self._kick.set()

    async def open(self) -> ClientConnection:
        """Open one engine connection within the connect timeout."""
        return await connect(
            self.url,
            open_timeout=self.settings.connect_timeout,
            ping_interval=None,  # this pool pings idle connections; sessions time replies
            close_timeout=1,
            max_size=MAX_ENGINE_MESSAGE,
            compression=None,
        )

    def take_idle(self) -> ClientConnection | None:
        while self._idle:
            conn = self._idle.popleft()
            if conn.state is State.OPEN:
                return conn
            asyncio.create_task(conn.close())  # noqa: RUF006 - close() is bounded by close_timeout
        return None

    def _close_idle(self) -> None:
        while self._idle:
            conn = self._idle.popleft()
            asyncio.create_task(conn.close())  # noqa: RUF006 - bounded by close_timeout

    async def maintain(self) -> None:
        """Keep warm connections topped up and pinged; reconnect with backoff. Runs forever."""
        backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max)
        while True:
            want = min(self.settings.idle_connections, self.free) - self.idle
            # With no warm connection to ping, a down engine is probed by connecting.
            probe = self.state != EngineState.UP and want <= 0 and self.idle == 0
            if want > 0 or probe:
                conn = await self._open_counted()
                if conn is None:
                    await self._sleep(backoff.next_delay())
                    continue
                backoff.reset()
                if probe:
                    await conn.close()
                else:
                    self._idle.append(conn)
                self._set_state(EngineState.UP, "")
                continue
            await self._sleep(self.settings.ping_interval)
            await self._ping_idle()

    async def _open_counted(self) -> ClientConnection | None:
        """Open a connection for the pool, holding its slot meanwhile; None if it failed."""
        self.opening += 1
        try:
            return await self.open()
        except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as exc:
            self.mark_down(f"connect failed: {exc or type(exc).__name__}")
            self._kick.clear()
            return None
        finally:
            self.opening -= 1

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), seconds)
        self._kick.clear()

    async def _ping_idle(self) -> None:
        for conn in list(self._idle):
            try:
                pong = await conn.ping()
                await asyncio.wait_for(pong, self.settings.ping_timeout)
            except (TimeoutError, WebSocketException, OSError) as exc:
                with contextlib.suppress(ValueError):
                    self._idle.remove(conn)
                reason = "no pong" if isinstance(exc, TimeoutError) else f"connection lost: {exc}"
                self.mark_down(reason)
                return

    async def close(self) -> None:
        conns = list(self._idle)
        self._idle.clear()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


class Lease:
    """A checked-out engine connection; `release()` frees the slot exactly once."""

    def __init__(self, pool: Pool, target: EngineTarget, conn: ClientConnection) -> None:
        self.pool, self.target, self.conn = pool, target, conn
        self._released = False

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.target.busy -= 1
        self.pool.changed()
        self.target.kick()
        await self.conn.close()


class Pool:
    """Every engine target of this intermediate, and checkout across them."""

    def __init__(self, urls: list[str], settings: PoolSettings) -> None:
        self.targets = [EngineTarget(url, settings, self.changed) for url in urls]
        self.listeners: list[Callable[[], None]] = []
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def changed(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        for listener in self.listeners:
            listener()

    @property
    def has_free_slot(self) -> bool:
        return any(t.state == EngineState.UP and t.free > 0 for t in self.targets)

    def snapshot(self) -> list[dict[str, Any]]:
        return [t.snapshot() for t in self.targets]

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(t.maintain(), name=f"pool:{t.url}") for t in self.targets
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(t.close() for t in self.targets))

    def _pick(self) -> EngineTarget | None:
        candidates = [t for t in self.targets if t.state == EngineState.UP and t.free > 0]
        if not candidates:
            return None
        # Warm connections first, then the least busy engine.
        return min(candidates, key=lambda t: (t.idle == 0, t.busy / t.settings.capacity))

    async def checkout(self, wait_seconds: float) -> Lease:
        """A connection to an up engine with a free slot, waiting at most `wait_seconds`."""
        deadline = time.monotonic() + wait_seconds
        while True:
            target = self._pick()
            if target is not None:
                target.busy += 1
                self.changed()
                conn = target.take_idle()
                if conn is None:
                    try:
                        conn = await target.open()
                    except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as exc:
                        target.busy -= 1
                        target.mark_down(f"connect failed: {exc or type(exc).__name__}")
                        continue
                target.kick()
                return Lease(self, target, conn)
            if not any(t.state == EngineState.UP for t in self.targets):
                raise NoEngineUp("no engine is up: " + self._reasons())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PoolExhausted(f"every engine slot stayed busy for {wait_seconds:g} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _reasons(self) -> str:
        return "; ".join(f"{t.url}: {t.state.value} ({t.reason})" for t in self.targets)
