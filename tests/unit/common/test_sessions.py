"""The session tracker every tier counts its sessions and drains with."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Gauge

from services.common.sessions import SessionTracker
from tests.support.timing import scaled


def _tracker(drain_seconds: float = 5.0, grace_seconds: float = 1.0) -> SessionTracker:
    registry = CollectorRegistry()
    return SessionTracker(
        drain_seconds=drain_seconds,
        grace_seconds=grace_seconds,
        draining_gauge=Gauge("t_draining", "", registry=registry),
        active_gauge=Gauge("t_active", "", registry=registry),
    )


async def _session_until(tracker: SessionTracker, event: asyncio.Event) -> asyncio.Task[None]:
    """A session counted by `tracker` that runs until `event` is set, started and counted."""

    async def session() -> None:
        with tracker.session():
            await event.wait()

    task = asyncio.create_task(session())
    await asyncio.sleep(0)  # let it enter the tracker
    assert tracker.active >= 1
    return task


def _gauge(tracker: SessionTracker, name: str) -> float:
    gauge = tracker._active_gauge if name == "active" else tracker._draining_gauge
    assert gauge is not None
    return float(gauge._value.get())


def test_sessions_are_counted_by_key_and_released_on_error() -> None:
    """A session counts under its key while it runs, and stops counting when it raises."""
    tracker = _tracker()
    with tracker.session("asr"), tracker.session("asr"), tracker.session("nict-asr"):
        assert tracker.by_key() == {"asr": 2, "nict-asr": 1}
        assert tracker.active == 3
        assert _gauge(tracker, "active") == 3
    with pytest.raises(RuntimeError), tracker.session("x"):
        raise RuntimeError("boom")
    assert tracker.by_key() == {}
    assert tracker.active == 0
    assert _gauge(tracker, "active") == 0


async def test_drain_returns_when_the_last_session_ends() -> None:
    """The drain waits for sessions in flight and does not expire those that end in time."""
    tracker = _tracker(drain_seconds=5)
    release = asyncio.Event()
    task = await _session_until(tracker, release)
    drain = asyncio.create_task(tracker.drain())
    await asyncio.sleep(0)
    assert tracker.draining
    assert _gauge(tracker, "draining") == 1
    assert not drain.done()
    release.set()
    async with asyncio.timeout(scaled(2)):
        await drain
    await task
    assert not tracker.expired.is_set()


async def test_drain_deadline_expires_sessions_then_waits_the_grace() -> None:
    """Sessions still running at the deadline see `expired` and get the grace to end."""
    tracker = _tracker(drain_seconds=0.05, grace_seconds=2)
    task = await _session_until(tracker, tracker.expired)
    async with asyncio.timeout(scaled(3)):
        await tracker.drain()
    assert tracker.expired.is_set()
    assert tracker.active == 0
    await task


async def test_drain_gives_up_after_the_grace() -> None:
    """A session that ignores the deadline does not hold the drain beyond deadline + grace."""
    tracker = _tracker(drain_seconds=0.05, grace_seconds=0.05)
    stuck = asyncio.Event()
    task = await _session_until(tracker, stuck)
    async with asyncio.timeout(scaled(2)):
        await tracker.drain()
    assert tracker.active == 1
    stuck.set()
    await task
