"""Backends of the route table's pools: channels, health watching, load, DNS re-resolution.

Each backend is one intermediate pod. Its health comes from a grpc.health.v1 Watch stream
(the intermediate reports SERVING exactly while its /readiness is 200); its load is the
number of sessions this router has on it. A pool address `dns:///name:port` (a headless
Service) is re-resolved on an interval, so every pod becomes a backend of its own and
sessions are balanced per stream instead of pinned to one HTTP/2 connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import grpc_util
from services.common.pb import recognizer_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

DNS_SCHEME = "dns:///"
RECOGNIZER_SERVICE = "kikimimi.v1.Recognizer"


class Backend:
    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address, options=grpc_util.CHANNEL_OPTIONS)
        self.stub = pb_grpc.RecognizerStub(self.channel)
        self.healthy = False
        self.outstanding = 0
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._watch = asyncio.create_task(self._watch_health(), name=f"health:{self.address}")

    async def _watch_health(self) -> None:
        stub = health_pb2_grpc.HealthStub(self.channel)
        delay = 0.2
        while True:
            try:
                request = health_pb2.HealthCheckRequest(service=RECOGNIZER_SERVICE)
                async for reply in stub.Watch(request):
                    self._set_healthy(reply.status == health_pb2.HealthCheckResponse.SERVING)
                    delay = 0.2
            except grpc.aio.AioRpcError as exc:
                self._set_healthy(False, exc.code().name)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, 5.0)

    def _set_healthy(self, healthy: bool, reason: str = "") -> None:
        if healthy != self.healthy:
            log.info(
                "backend %s is %s",
                self.address,
                "healthy" if healthy else "unhealthy",
                extra={"backend": self.address, "reason": reason},
            )
        self.healthy = healthy

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        await self.channel.close(grace=None)


_closing: set[asyncio.Task[None]] = set()


def _close_later(backend: Backend) -> None:
    task = asyncio.ensure_future(backend.close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


class BackendPool:
    """The backends of one pool of the route table."""

    def __init__(self, name: str, addresses: Iterable[str]) -> None:
        self.name = name
        self.addresses = tuple(addresses)
        self.backends: dict[str, Backend] = {}

    def healthy_count(self) -> int:
        return sum(b.healthy for b in self.backends.values())

    def pick(self, exclude: frozenset[str] = frozenset()) -> Backend | None:
        """The least loaded healthy backend, avoiding `exclude` unless nothing else is left."""
        healthy = [b for b in self.backends.values() if b.healthy]
        preferred = [b for b in healthy if b.address not in exclude] or healthy
        if not preferred:
            return None
        least = min(b.outstanding for b in preferred)
        return random.choice([b for b in preferred if b.outstanding == least])

    async def resolve(self) -> set[str]:
        """Every concrete host:port of this pool now."""
        resolved: set[str] = set()
        loop = asyncio.get_running_loop()
        for address in self.addresses:
            if not address.startswith(DNS_SCHEME):
                resolved.add(address)
                continue
            host, _, port = address[len(DNS_SCHEME) :].rpartition(":")
            try:
                infos = await loop.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
            except OSError as exc:
                log.warning("cannot resolve %s: %s", address, exc, extra={"pool": self.name})
                # Keep what we had rather than dropping every backend on a DNS hiccup.
                resolved.update(a for a in self.backends if a not in self.addresses)
                continue
            for family, _, _, _, sockaddr in infos:
                ip = str(sockaddr[0])
                resolved.add(f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}")
        return resolved

    async def refresh(self) -> None:
        wanted = await self.resolve()
        for address in wanted - self.backends.keys():
            backend = Backend(address)
            backend.start()
            self.backends[address] = backend
        for address in set(self.backends) - wanted:
            backend = self.backends.pop(address)
            log.info("backend %s left pool %s", address, self.name)
            # Sessions on it keep their own reference; the channel closes when they end.
            asyncio.get_running_loop().call_later(60, _close_later, backend)

    async def close(self) -> None:
        await asyncio.gather(*(b.close() for b in self.backends.values()))
        self.backends.clear()


class BackendRegistry:
    """Every pool of the current route table, kept across reloads by pool name."""

    def __init__(self, resolve_interval: float) -> None:
        self.resolve_interval = resolve_interval
        self.pools: dict[str, BackendPool] = {}
        self._task: asyncio.Task[None] | None = None

    async def apply(self, pools: dict[str, tuple[str, ...]]) -> None:
        """Make the pools match a (new) route table: keep unchanged pools and their backends."""
        for name in set(self.pools) - pools.keys():
            await self.pools.pop(name).close()
        for name, addresses in pools.items():
            current = self.pools.get(name)
            if current is None or current.addresses != addresses:
                pool = BackendPool(name, addresses)
                if current is not None:
                    pool.backends = current.backends  # refresh() adds and drops the difference
                self.pools[name] = pool
            await self.pools[name].refresh()

    def start(self) -> None:
        self._task = asyncio.create_task(self._resolve_forever(), name="resolve-backends")

    async def _resolve_forever(self) -> None:
        while True:
            await asyncio.sleep(self.resolve_interval)
            for pool in list(self.pools.values()):
                try:
                    await pool.refresh()
                except Exception:  # one pool's failure must not stop the others' refresh
                    log.exception("refreshing pool %s failed", pool.name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*(p.close() for p in self.pools.values()))
