"""Load on the endpoint: many sessions at once, backpressure from a slow engine, idle cost."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.audio import SECOND
from tests.support.client import mimi_headers, stream_session
from tests.support.processes import Service
from tests.support.stack import Stack
from tests.support.timing import scaled

MIB = 1024 * 1024


@dataclass(frozen=True)
class Load:
    endpoint: Service

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.endpoint.ports['http']}/"

    def rss(self) -> int:
        return int(psutil.Process(self.endpoint.proc.pid).memory_info().rss)


@pytest.fixture(scope="module")
def load(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Load]:
    with Stack(tmp_path_factory.mktemp("stack")) as stack:
        # engine_stub has no capacity limit; the pool's default (64) is raised for 200.
        ja = stack.intermediate("im-ja", [stack.engine_stub("engine-ja")], engine_capacity=400)
        # 100 ms per engine reply: far slower than a client can send.
        # Its replies queue behind each other: give the pool's stuck-engine timeout room.
        slow = stack.intermediate(
            "im-slow",
            [stack.engine_stub("e-slow", frame_latency_ms=100)],
            engine_capacity=8,
            reply_timeout=60,
        )
        router = stack.router({"ja": [ja], "slow": [slow]})
        yield Load(stack.endpoint(router))


@contextlib.asynccontextmanager
async def idle_sessions(url: str, count: int) -> AsyncIterator[list[ClientConnection]]:
    connections: list[ClientConnection] = []
    try:
        for _ in range(count):
            connections.append(
                await connect(url, additional_headers=mimi_headers(), open_timeout=10)
            )
        yield connections
    finally:
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)


async def test_memory_per_idle_session_is_small(load: Load) -> None:
    """A hundred accepted idle sessions cost the endpoint under 512 KiB each (run first:
    after the 200-session test the heap has room to spare and the cost looks near zero)."""
    async with idle_sessions(load.ws, 20):  # warm up allocator pools
        pass
    before = load.rss()
    async with idle_sessions(load.ws, 100):
        per_session = (load.rss() - before) / 100
    print(f"endpoint memory per idle session: {per_session / 1024:.0f} KiB")
    assert per_session < 512 * 1024


async def test_200_sessions_at_once_all_finish(load: Load) -> None:
    """Two hundred concurrent sessions each get their own audio echoed and close 1000."""
    audios = [os.urandom(SECOND // 2) for _ in range(200)]
    headers = mimi_headers(options="response_format=v2")
    results = await asyncio.gather(
        *(stream_session(load.ws, audio, headers, within=100) for audio in audios)
    )
    assert [r.close_code for r in results] == [1000] * 200
    for audio, result in zip(audios, results, strict=True):
        digest = hashlib.sha256(audio).hexdigest()[:16]
        assert result.finished["response"][0]["result"] == f"bytes={len(audio)} sha256={digest}"


async def test_slow_engine_stops_the_endpoint_reading(load: Load) -> None:
    """A client far faster than the engine is held back; the endpoint's memory stays flat."""
    frame = os.urandom(65536)
    total = 2048 * len(frame)  # 128 MiB: more than every socket buffer on the path holds
    sent = 0
    before = load.rss()
    async with connect(load.ws, additional_headers=mimi_headers(language="slow")) as ws:

        async def send() -> None:
            nonlocal sent
            for _ in range(total // len(frame)):
                await ws.send(frame)
                sent += len(frame)
                await asyncio.sleep(0)  # a send into free socket buffer does not yield

        sender = asyncio.create_task(send())
        try:
            # Measuring a rate: there is no event to await. The buffers on the path (sockets,
            # gRPC flow-control windows that grow with the measured round trip) fill first;
            # then the client is held to the engine's pace (0.6 MiB/s). How soon depends on
            # the machine's load, so look for the first second with little progress.
            stalled_at, previous = None, 0
            for _ in range(round(scaled(20))):
                await asyncio.sleep(1)
                assert ws.close_code is None  # still streaming, not failed
                if sent - previous < 4 * MIB:  # the engine's pace, plus socket slack
                    stalled_at = sent
                    break
                previous = sent
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        grown = load.rss() - before
    print(f"held back after {sent / MIB:.1f} MiB; endpoint RSS grew {grown / MIB:.1f} MiB")
    assert stalled_at is not None, f"still sending at {sent / MIB:.1f} MiB/s after 20 s"
    assert stalled_at < total / 2  # held back: the rest waits in the client
    assert grown < 32 * MIB
