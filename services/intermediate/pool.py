"""The engine connection pool (docs/architecture.md, "Pools, health, balancing and failover").

Per engine target: a capacity (sessions at once) and a number of warm idle connections.
Every connection to an engine — busy with a session, idle and warm, or being opened —
counts against the capacity, so the pool never holds more connections than the engine
serves. A maintainer task per target keeps the warm connections topped up, pings them,
probes an engine it has no warm connection to, marks the engine down when a ping or a
connect fails, and reconnects with exponential backoff and jitter. Sessions check a
connection out for their whole life (an engine connection serves one session) and release
it at the end, whatever happened: the slot is freed in a `finally`, cancellation included.

States: `starting` until the engine has answered once (a model still loading keeps the pod
unready, never dead), `up`, and `down` after it was up and then failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.protocol import State

from services.intermediate.config import Settings
from services.intermediate.connections import (
    CLOSE_TIMEOUT,
    Backoff,
    close_connection,
    describe,
    open_connection,
)
from services.intermediate.errors import NoEngineUp, PoolExhausted

log = logging.getLogger(__name__)


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

    @classmethod
    def of(cls, settings: Settings) -> PoolSettings:
        """The pool's part of the intermediate's settings."""
        return cls(
            capacity=settings.engine_capacity,
            idle_connections=settings.idle_connections,
            connect_timeout=settings.connect_timeout,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            backoff_initial=settings.backoff_initial,
            backoff_max=settings.backoff_max,
        )


class EngineTarget:
    """One engine: its state, its warm connections and its busy slots."""

    def __init__(self, url: str, settings: PoolSettings, on_change: Callable[[], None]) -> None:
        self.url = url
        self.settings = settings
        self.state = EngineState.STARTING
        self.reason = "waiting for the engine's first answer"
        self.busy = 0  # sessions holding a connection (including one being opened for them)
        self.opening = 0  # warm connections or probes the maintainer is opening
        self.reconnects = 0  # times the engine came back up after being down
        self.connect_failures = 0
        self._lost = False  # a warm connection closed under us since the maintainer looked
        self._idle: deque[ClientConnection] = deque()
        self._on_change = on_change
        self._kick = asyncio.Event()

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def connections(self) -> int:
        return self.busy + self.idle + self.opening

    @property
    def free(self) -> int:
        """Slots a new session can take now: only while the engine is up."""
        return self.settings.capacity - self.busy if self.state == EngineState.UP else 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "state": self.state.value,
            "reason": self.reason if self.state != EngineState.UP else "",
            "capacity": self.settings.capacity,
            "busy": self.busy,
            "free": self.free,
            "idle_connections": self.idle,
        }

    def _set_state(self, state: EngineState, reason: str) -> None:
        if state != self.state:
            if state == EngineState.UP and self.state == EngineState.DOWN:
                self.reconnects += 1
            log.log(
                logging.INFO if state == EngineState.UP else logging.WARNING,
                "engine %s is %s%s",
                self.url,
                state.value,
                f": {reason}" if reason else "",
                extra={"engine": self.url, "engine_state": state.value, "reason": reason},
            )
        self.state, self.reason = state, reason
        self._on_change()

    def _failed(self, reason: str) -> None:
        """The engine did not answer: down if it was up; a starting engine stays starting."""
        self._abort_idle()
        if self.state == EngineState.STARTING:
            if self.connect_failures == 1:  # once: a slow start is normal, not an alarm
                log.info(
                    "engine %s is starting: %s",
                    self.url,
                    reason,
                    extra={"engine": self.url, "engine_state": "starting", "reason": reason},
                )
            self.reason = f"waiting for the engine: {reason}"
            self._on_change()
        else:
            self._set_state(EngineState.DOWN, reason)

    def kick(self) -> None:
        """Wake the maintainer now (a slot was freed or a session saw the engine fail)."""
        self._kick.set()

    async def open(self) -> ClientConnection:
        """Open one engine connection within the connect timeout."""
        return await open_connection(self.url, self.settings.connect_timeout)

    def _take_idle(self) -> ClientConnection | None:
        while self._idle:
            conn = self._idle.popleft()
            if conn.state is State.OPEN:
                return conn
            conn.transport.abort()
        return None

    def _idle_lost(self, conn: ClientConnection) -> None:
        """A warm connection closed under us: the engine may be gone; look now, not later."""
        if conn in self._idle:
            self._idle.remove(conn)
            self._lost = True
            self._on_change()
            self.kick()

    def _abort_idle(self) -> None:
        while self._idle:
            self._idle.popleft().transport.abort()

    def checkout_idle(self) -> ClientConnection | None:
        """A warm connection for a session, its slot taken; None when there is none."""
        conn = self._take_idle()
        if conn is None:
            return None
        self.busy += 1
        self._on_change()
        self.kick()  # open a replacement warm connection
        return conn

    async def open_for_session(self) -> ClientConnection | None:
        """A new connection for a session, its slot held while connecting (so nobody else
        overfills it); None when the engine failed to connect (the failure is recorded)."""
        self.busy += 1
        self._on_change()
        try:
            return await self.open()
        except BaseException as exc:
            self.busy -= 1
            if not isinstance(exc, Exception):
                self._on_change()
                raise
            self.connect_failures += 1
            self._failed(f"connect failed: {describe(exc)}")
            return None

    def release_slot(self) -> None:
        self.busy -= 1
        self._on_change()
        self.kick()

    # -- the maintainer --------------------------------------------------------------
    def _warm_wanted(self) -> int:
        room = self.settings.capacity - self.connections
        wanted = min(self.settings.idle_connections, self.settings.capacity - self.busy)
        return min(room, wanted - self.idle - self.opening)

    async def maintain(self) -> None:
        """Keep warm connections topped up and pinged; reconnect with backoff. Runs forever."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max)
        next_check = loop.time() + self.settings.ping_interval
        while True:
            try:
                if self._lost:  # an engine that closes warm connections must not spin us
                    self._lost = False
                    await self._sleep(backoff.next_delay())
                if self.state != EngineState.UP or self._warm_wanted() > 0:
                    answered = await self._connect()
                    if answered is False:
                        await self._sleep(backoff.next_delay())
                        continue
                    if answered and self._warm_wanted() > 0:
                        continue
                if loop.time() >= next_check:
                    next_check = loop.time() + self.settings.ping_interval
                    if not await self._check():
                        await self._sleep(backoff.next_delay())
                        continue
                    backoff.reset()  # only a connection that kept answering resets it
                await self._sleep(next_check - loop.time())
            except Exception as exc:  # a bug must not stop liveness monitoring for good
                log.exception("engine maintainer failed", extra={"engine": self.url})
                self._failed(f"maintainer error: {describe(exc)}")
                await self._sleep(backoff.next_delay())

    async def _connect(self) -> bool | None:
        """Open a warm connection (or a probe); True if the engine answered, None if no room.

        An engine that is not up must also answer a ping on the new connection: a process
        that accepts connections but never answers pings is not counted as alive.
        """
        if self.connections >= self.settings.capacity:
            return None
        keep = self._warm_wanted() > 0
        self.opening += 1
        conn: ClientConnection | None = None
        try:
            conn = await self.open()
            if self.state != EngineState.UP:
                pong = await conn.ping()
                async with asyncio.timeout(self.settings.ping_timeout):
                    await pong
        except BaseException as exc:
            self.opening -= 1
            if conn is not None:
                conn.transport.abort()
            if not isinstance(exc, Exception):
                raise
            self.connect_failures += 1
            if conn is None:
                self._failed(f"connect failed: {describe(exc)}")
            else:
                self._failed(f"no pong on a new connection: {describe(exc)}")
            return False
        self.opening -= 1
        if keep and self.connections < self.settings.capacity and conn.state is State.OPEN:
            self._idle.append(conn)
            conn.connection_lost_waiter.add_done_callback(lambda _: self._idle_lost(conn))
        else:
            await close_connection(conn, graceful=True)
        self._set_state(EngineState.UP, "")
        return True

    async def _check(self) -> bool:
        """Ping every warm connection (or probe by connecting if there is none); False: failed."""
        if not self._idle:
            if self.settings.idle_connections > 0 and self._warm_wanted() <= 0:
                return True  # every slot is busy: the sessions' reply timeouts watch the engine
            return await self._connect() is not False
        for conn in list(self._idle):
            try:
                pong = await conn.ping()
                async with asyncio.timeout(self.settings.ping_timeout):
                    await pong
            except Exception as exc:
                reason = "no pong" if isinstance(exc, TimeoutError) else describe(exc)
                with contextlib.suppress(ValueError):
                    self._idle.remove(conn)
                conn.transport.abort()
                self._failed(f"ping failed: {reason}")
                return False
        return True

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds)):
                await self._kick.wait()
        self._kick.clear()

    async def close(self) -> None:
        conns = list(self._idle)
        self._idle.clear()
        await asyncio.gather(*(close_connection(c, graceful=True) for c in conns))


class Lease:
    """A checked-out engine connection; `release()` frees the slot exactly once."""

    def __init__(self, target: EngineTarget, conn: ClientConnection) -> None:
        self.target, self.conn = target, conn
        self._released = False

    async def release(self, graceful: bool) -> None:
        """Close the connection (so the engine has freed its side), then free the slot."""
        if self._released:
            return
        self._released = True
        try:
            await close_connection(self.conn, graceful)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self.conn.wait_closed()
        finally:
            self.target.release_slot()


class Pool:
    """Every engine target of this intermediate, and checkout across them."""

    def __init__(self, urls: list[str], settings: PoolSettings) -> None:
        self.targets = [EngineTarget(url, settings, self.changed) for url in urls]
        self._listeners: list[Callable[[], None]] = []
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._turn = itertools.count()

    def changed(self) -> None:
        """Something that readiness or a waiting checkout depends on has changed."""
        self._changed.set()
        self._changed = asyncio.Event()
        for listener in self._listeners:
            listener()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever `changed()` is (readiness may have changed)."""
        self._listeners.append(listener)

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

    def _candidates(self) -> list[EngineTarget]:
        """Up engines with a free slot: least busy first, ties taken in turn."""
        up = [t for t in self.targets if t.free > 0]
        if not up:
            return []
        turn = next(self._turn) % len(self.targets)
        order = {id(t): (i - turn) % len(self.targets) for i, t in enumerate(self.targets)}
        return sorted(up, key=lambda t: (t.busy / t.settings.capacity, order[id(t)]))

    async def checkout(self, wait_seconds: float) -> Lease:
        """A connection to an up engine with a free slot, waiting at most `wait_seconds`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            if not any(t.state == EngineState.UP for t in self.targets):
                raise NoEngineUp("no engine is up: " + self._reasons())
            for target in self._candidates():
                conn = target.checkout_idle()
                if conn is not None:
                    return Lease(target, conn)
                if target.connections < target.settings.capacity:
                    conn = await target.open_for_session()
                    if conn is not None:
                        return Lease(target, conn)
                    break  # that engine failed; look again at the others
            else:  # every free slot is a warm connection still being opened: wait for it
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise PoolExhausted(f"every engine slot stayed busy for {wait_seconds:g} s")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()

    def _reasons(self) -> str:
        return "; ".join(f"{t.url}: {t.state.value} ({t.reason})" for t in self.targets)
