"""ProxySession against in-process gRPC backends: retries at start, failover, its bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from services.common.pb import recognizer_pb2 as pb
from services.router.backends import BackendPool
from services.router.errors import RETRYABLE_AT_START, BackendFailed, NoBackend
from services.router.proxy import ProxySession, ProxySettings
from tests.unit.router.fake_backend import FRAME, FakeBackend, start, stop


def session(pool: BackendPool, buffer_bytes: int = 1 << 20) -> ProxySession:
    start_message = pb.Start(session_id="s", process="asr", language="en")
    settings = ProxySettings(
        accept_timeout=5, start_attempts=3, max_failovers=2, buffer_bytes=buffer_bytes, deadline=30
    )
    return ProxySession(start_message, pool, settings, ())


async def run(proxy: ProxySession, frames: int) -> list[pb.RecognizeResponse]:
    async def requests() -> AsyncIterator[pb.RecognizeRequest]:
        for _ in range(frames):
            yield pb.RecognizeRequest(audio=FRAME)
        yield pb.RecognizeRequest(end=pb.End())

    pump = asyncio.create_task(proxy.pump_client(requests()))
    try:
        async with asyncio.timeout(20):
            return [reply async for reply in proxy.relay()]
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        proxy.close()


async def test_refusal_at_start_is_retried_on_the_next_backend() -> None:
    """A backend refusing with UNAVAILABLE before accepting costs one retry, not the session."""
    pool, servers = await start([FakeBackend(refuse=True), FakeBackend()])
    try:
        proxy = session(pool)  # round-robin starts with the first, refusing, backend
        await proxy.connect(RETRYABLE_AT_START)
        replies = await run(proxy, 3)
        assert proxy.retries == 1
        assert proxy.used == list(pool.backends)[1:]
        assert replies[-1].finished.text == "s0 s1 s2"
    finally:
        await stop(pool, servers)


async def test_no_backend_taking_the_session_is_unavailable() -> None:
    """When every backend refuses, connect raises NoBackend (UNAVAILABLE) after trying each."""
    pool, servers = await start([FakeBackend(refuse=True), FakeBackend(refuse=True)])
    try:
        proxy = session(pool)
        with pytest.raises(NoBackend):
            await proxy.connect(RETRYABLE_AT_START)
        assert proxy.retries == 2
        assert all(b.outstanding == 0 for b in pool.backends.values())
    finally:
        await stop(pool, servers)


async def test_failover_replays_the_audio_and_sends_each_segment_once() -> None:
    """A backend lost after 3 frames: the other gets all 6, the client each segment once."""
    fakes = [FakeBackend(fail_after=3), FakeBackend()]
    pool, servers = await start(fakes)
    try:
        proxy = session(pool)  # round-robin starts with the first, failing, backend
        await proxy.connect(RETRYABLE_AT_START)
        replies = await run(proxy, 6)
        segments = [r.segment.text for r in replies if r.HasField("segment")]
        assert segments == [f"s{i}" for i in range(6)]
        assert replies[-1].finished.text == "s0 s1 s2 s3 s4 s5"
        assert proxy.failovers == 1
        assert [f.frames_seen for f in fakes] == [3, 6]
    finally:
        await stop(pool, servers)


async def test_no_failover_beyond_the_audio_bound() -> None:
    """With more audio than the log keeps, a lost backend ends the session as UNAVAILABLE."""
    pool, servers = await start([FakeBackend(fail_after=3), FakeBackend()])
    try:
        proxy = session(pool, buffer_bytes=2 * len(FRAME))
        await proxy.connect(RETRYABLE_AT_START)
        with pytest.raises(BackendFailed) as info:
            await run(proxy, 6)
        assert info.value.status == grpc.StatusCode.UNAVAILABLE
        assert proxy.failovers == 0
    finally:
        await stop(pool, servers)


async def relay_all(proxy: ProxySession) -> None:
    async for _ in proxy.relay():
        pass


async def test_cancelled_connect_gives_the_backend_slot_back() -> None:
    """A session cancelled while a backend has not accepted yet (the endpoint's accept
    timeout) leaves no phantom session on that backend (issue 13 item 4)."""
    hanging = FakeBackend(hang=True)
    pool, servers = await start([hanging])
    try:
        proxy = session(pool)
        connecting = asyncio.create_task(proxy.connect(RETRYABLE_AT_START))
        async with asyncio.timeout(10):
            await hanging.started.wait()
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        proxy.close()
        assert [b.outstanding for b in pool.backends.values()] == [0]
    finally:
        await stop(pool, servers)


async def test_cancelled_failover_gives_every_backend_slot_back() -> None:
    """A session cancelled while failing over to a backend that has not accepted yet
    leaves no session counted on either backend (issue 13 item 4)."""
    failing, hanging = FakeBackend(fail_after=1), FakeBackend(hang=True)
    pool, servers = await start([failing, hanging])

    async def two_frames_then_silence() -> AsyncIterator[pb.RecognizeRequest]:
        # Nothing is written while the backend fails: this test is about the counts; the
        # write racing the backend's end is test_a_write_racing_the_backends_end_...
        for _ in range(2):
            yield pb.RecognizeRequest(audio=FRAME)
        await asyncio.Event().wait()

    try:
        proxy = session(pool)  # round-robin starts with the first, failing, backend
        await proxy.connect(RETRYABLE_AT_START)
        pump = asyncio.create_task(proxy.pump_client(two_frames_then_silence()))
        relaying = asyncio.create_task(relay_all(proxy))
        async with asyncio.timeout(10):
            await hanging.started.wait()
        for task in (relaying, pump):
            task.cancel()
        await asyncio.gather(relaying, pump, return_exceptions=True)
        assert proxy.failovers == 1
        assert [b.outstanding for b in pool.backends.values()] == [0, 0]
    finally:
        await stop(pool, servers)


async def test_a_write_racing_the_backends_end_still_fails_over() -> None:
    """A backend that ends the call (UNAVAILABLE) while the router is still writing audio to
    it is failed over. grpc-python may report such a call as INTERNAL "Internal error from
    Core" instead of the backend's status (grpc/grpc#36066); the session must not be lost
    to that. Audio is pushed unpaced in large frames, so a write is pending when the
    backend ends; 10 sessions make the race all but certain on the old code."""
    big = FRAME * 20  # 32 KB: the writes outrun the HTTP/2 window and wait on it
    for _ in range(10):
        fakes = [FakeBackend(fail_after=1), FakeBackend()]
        pool, servers = await start(fakes)
        try:
            proxy = session(pool)  # round-robin starts with the first, failing, backend
            await proxy.connect(RETRYABLE_AT_START)

            async def unpaced() -> AsyncIterator[pb.RecognizeRequest]:
                for _ in range(24):
                    yield pb.RecognizeRequest(audio=big)
                yield pb.RecognizeRequest(end=pb.End())

            pump = asyncio.create_task(proxy.pump_client(unpaced()))
            try:
                async with asyncio.timeout(20):
                    replies = [reply async for reply in proxy.relay()]
            finally:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
                proxy.close()
            assert proxy.failovers == 1
            assert replies[-1].finished.text == " ".join(f"s{i}" for i in range(24))
        finally:
            await stop(pool, servers)
