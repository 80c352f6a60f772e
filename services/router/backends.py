"""Backends of the route table's pools: channels, health watching, load, DNS re-resolution.

Each backend is one intermediate pod. Its health comes from a grpc.health.v1 Watch stream
(the intermediate reports SERVING exactly while its /readiness is 200); its load is the
number of sessions this router has on it. A pool address `dns:///name:port` (a headless
Service) is re-resolved on an interval, so every pod becomes a backend of its own and
sessions are balanced per stream instead of pinned to one HTTP/2 connection.

A backend that leaves its pool (DNS answer changed, route table reloaded) is *retired*: it
gets no new session, and its channel closes once the sessions it carries have ended. One
that comes back before then is the same backend again, with the sessions it still carries:
it does not look empty to the least-loaded choice and take a burst of new sessions.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import grpc_util
from services.common.pb import recognizer_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

DNS_SCHEME = "dns:///"
_WATCH_BACKOFF_MIN, _WATCH_BACKOFF_MAX = 0.2, 5.0

# host, port → every "ip:port" the name has now (raises OSError when it cannot resolve).
Resolver = Callable[[str, int], Awaitable[set[str]]]


async def resolve_dns(host: str, port: int) -> set[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return {
        f"[{sockaddr[0]}]:{port}" if family == socket.AF_INET6 else f"{sockaddr[0]}:{port}"
        for family, _, _, _, sockaddr in infos
    }


class Backend:
    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address, options=grpc_util.CHANNEL_OPTIONS)
        self.stub = pb_grpc.RecognizerStub(self.channel)
        self.healthy = False
        self.retired = False
        self.outstanding = 0
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._watch = asyncio.create_task(self._watch_health(), name=f"health:{self.address}")

    async def _watch_health(self) -> None:
        stub = health_pb2_grpc.HealthStub(self.channel)
        delay = _WATCH_BACKOFF_MIN
        while True:
            try:
                request = health_pb2.HealthCheckRequest(service=grpc_util.RECOGNIZER_SERVICE)
                async for reply in stub.Watch(request):
                    self._set_healthy(reply.status == health_pb2.HealthCheckResponse.SERVING)
                    delay = _WATCH_BACKOFF_MIN
                self._set_healthy(False, "health stream ended")
            except grpc.aio.AioRpcError as exc:
                self._set_healthy(False, exc.code().name)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, _WATCH_BACKOFF_MAX)

    def _set_healthy(self, healthy: bool, reason: str = "") -> None:
        if healthy != self.healthy:
            log.info(
                "backend %s is %s",
                self.address,
                "healthy" if healthy else "unhealthy",
                extra={"backend": self.address, "reason": reason},
            )
        self.healthy = healthy

    def retire(self) -> None:
        """Take no new session; close() once `outstanding` is 0."""
        self.retired = True
        self.healthy = False
        if self._watch is not None:
            self._watch.cancel()

    def revive(self) -> None:
        """Back in its pool before it was closed: watch its health again, keep its count."""
        self.retired = False
        self.start()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        await self.channel.close(grace=None)


def pick_least_loaded(backends: list[Backend], turn: int) -> Backend | None:
    """The healthy backend with the fewest sessions; ties go round-robin by `turn`."""
    healthy = [b for b in backends if b.healthy and not b.retired]
    if not healthy:
        return None
    least = min(b.outstanding for b in healthy)
    tied = [b for b in healthy if b.outstanding == least]
    return tied[turn % len(tied)]


class BackendPool:
    """The backends of one pool of the route table."""

    def __init__(
        self, name: str, addresses: Iterable[str], resolver: Resolver = resolve_dns
    ) -> None:
        self.name = name
        self.addresses = tuple(addresses)
        self.backends: dict[str, Backend] = {}
        self.resolver = resolver
        self._turn = 0

    def healthy_count(self) -> int:
        return sum(b.healthy for b in self.backends.values())

    def pick(self, exclude: frozenset[str] = frozenset()) -> Backend | None:
        """The least loaded healthy backend, avoiding `exclude` unless nothing else is left."""
        candidates = [b for b in self.backends.values() if b.address not in exclude]
        backend = pick_least_loaded(candidates, self._turn) or pick_least_loaded(
            list(self.backends.values()), self._turn
        )
        self._turn += 1
        return backend

    async def resolve(self) -> set[str]:
        """Every concrete host:port of this pool now."""
        resolved: set[str] = set()
        for address in self.addresses:
            if not address.startswith(DNS_SCHEME):
                resolved.add(address)
                continue
            host, _, port = address[len(DNS_SCHEME) :].rpartition(":")
            try:
                found = await self.resolver(host, int(port))
            except OSError as exc:
                log.warning("cannot resolve %s: %s", address, exc, extra={"pool": self.name})
                found = set()
            if not found:
                # Keep what we had rather than dropping every backend on a DNS hiccup.
                found = {a for a in self.backends if a not in self.addresses}
            resolved |= found
        return resolved

    async def refresh(self, retired: list[Backend] | None = None) -> list[Backend]:
        """Match the backends to what the addresses resolve to now; returns the retired ones.

        An address that comes back while its retired backend is still open (in `retired`,
        from which it is taken) is that backend again, with its session count.
        """
        wanted = await self.resolve()
        for address in sorted(wanted - self.backends.keys()):
            backend = self._returning(address, retired) or Backend(address)
            if backend.retired:
                backend.revive()
                log.info(
                    "backend %s returned to pool %s with %d sessions",
                    address,
                    self.name,
                    backend.outstanding,
                )
            else:
                backend.start()
                log.info("backend %s joined pool %s", address, self.name)
            self.backends[address] = backend
        retired = []
        for address in sorted(set(self.backends) - wanted):
            backend = self.backends.pop(address)
            backend.retire()
            retired.append(backend)
            log.info("backend %s left pool %s", address, self.name)
        return retired

    @staticmethod
    def _returning(address: str, retired: list[Backend] | None) -> Backend | None:
        for backend in retired or ():
            if backend.address == address:
                retired.remove(backend)  # type: ignore[union-attr]
                return backend
        return None

    def retire_all(self) -> list[Backend]:
        retired = list(self.backends.values())
        for backend in retired:
            backend.retire()
        self.backends = {}
        return retired


class BackendRegistry:
    """Every pool of the current route table, kept across reloads by pool name."""

    def __init__(self, resolve_interval: float, resolver: Resolver = resolve_dns) -> None:
        self.resolve_interval = resolve_interval
        self.resolver = resolver
        self.pools: dict[str, BackendPool] = {}
        self.retired: list[Backend] = []
        self._task: asyncio.Task[None] | None = None

    async def apply(self, pools: dict[str, tuple[str, ...]]) -> None:
        """Make the pools match a (new) route table: keep unchanged pools and their backends.

        Sessions in flight keep their own Backend objects; a backend that leaves is retired,
        never closed under them (the resolve loop closes it once it carries no session).
        """
        for name, addresses in pools.items():
            current = self.pools.get(name)
            if current is None or current.addresses != addresses:
                pool = BackendPool(name, addresses, self.resolver)
                if current is not None:
                    pool.backends = current.backends  # refresh() adds and drops the difference
                    pool._turn = current._turn
                self.pools[name] = pool
            self.retired += await self.pools[name].refresh(self.retired)
        # Removed last and without awaiting: the old table never names a missing pool while
        # the caller switches tables.
        for name in set(self.pools) - pools.keys():
            self.retired += self.pools.pop(name).retire_all()

    async def close_idle_retired(self) -> None:
        idle = [b for b in self.retired if b.outstanding == 0]
        self.retired = [b for b in self.retired if b.outstanding > 0]
        await asyncio.gather(*(b.close() for b in idle))

    def start(self) -> None:
        self._task = asyncio.create_task(self._resolve_forever(), name="resolve-backends")

    async def _resolve_forever(self) -> None:
        while True:
            await asyncio.sleep(self.resolve_interval)
            for pool in list(self.pools.values()):
                try:
                    self.retired += await pool.refresh(self.retired)
                except Exception:  # one pool's failure must not stop the others' refresh
                    log.exception("refreshing pool %s failed", pool.name)
            await self.close_idle_retired()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for pool in self.pools.values():
            self.retired += pool.retire_all()
        self.pools.clear()
        await asyncio.gather(*(b.close() for b in self.retired))
        self.retired = []
