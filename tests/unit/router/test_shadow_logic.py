"""Shadow sessions against an in-process gRPC backend: compare, count, drop when behind."""

from __future__ import annotations

import asyncio

from services.common.pb import recognizer_pb2 as pb
from services.router.metrics import Metrics
from services.router.shadow import ShadowSession, ShadowSettings, settle
from tests.unit.router.fake_backend import FRAME, FakeBackend, start, stop

AUDIO = pb.RecognizeRequest(audio=FRAME)
END = pb.RecognizeRequest(end=pb.End())


def counted(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "kikimimi_router_shadow_sessions_total", {"route": "asr/en", "result": result}
    )
    return value or 0.0


async def shadow_run(primary_text: str | None, queue_frames: int = 100) -> Metrics:
    """Mirror three frames and an end to a fake shadow, settle against `primary_text`."""
    pool, servers = await start([FakeBackend()])
    metrics = Metrics()
    try:
        settings = ShadowSettings(
            accept_timeout=5, queue_bytes=queue_frames * len(FRAME), finish_timeout=10, deadline=30
        )
        shadow = ShadowSession(pb.Start(process="asr", language="en"), pool, settings, ())
        shadow.begin()
        for request in (AUDIO, AUDIO, AUDIO, END):
            shadow.offer(request)  # never blocks, even before the shadow accepted
        primary = None if primary_text is None else pb.Finished(text=primary_text)
        await settle(shadow, primary, "en", "asr/en", metrics)
        assert pool.backends[next(iter(pool.backends))].outstanding == 0
    finally:
        await stop(pool, servers)
    return metrics


async def test_same_final_text_is_a_match() -> None:
    """A shadow whose final text equals the primary's is counted as a match."""
    metrics = await shadow_run("s0 s1 s2")
    assert counted(metrics, "match") == 1


async def test_different_final_text_is_a_mismatch_with_its_errors() -> None:
    """One word of three different is a mismatch with one word error of three."""
    metrics = await shadow_run("s0 s1 x")
    assert counted(metrics, "mismatch") == 1
    errors = metrics.registry.get_sample_value(
        "kikimimi_router_shadow_word_errors_total", {"route": "asr/en"}
    )
    words = metrics.registry.get_sample_value(
        "kikimimi_router_shadow_reference_words_total", {"route": "asr/en"}
    )
    assert (errors, words) == (1, 3)


async def test_shadow_falling_behind_is_dropped_as_a_failure() -> None:
    """More audio waiting than the shadow's queue holds drops the shadow: a failure."""
    metrics = await shadow_run("s0 s1 s2", queue_frames=2)
    assert counted(metrics, "failure") == 1


async def test_primary_that_did_not_finish_aborts_its_shadow() -> None:
    """Without a primary final result there is nothing to compare: aborted."""
    metrics = await shadow_run(None)
    assert counted(metrics, "aborted") == 1


async def test_shadow_cancelled_mid_stream_gives_its_backend_slot_back() -> None:
    """A shadow whose primary fails mid-stream is cancelled while it streams (its writer
    running): its backend's session count still goes back to 0 (issue 13 item 5)."""
    fake = FakeBackend()
    pool, servers = await start([fake])
    metrics = Metrics()
    try:
        settings = ShadowSettings(
            accept_timeout=5, queue_bytes=100 * len(FRAME), finish_timeout=10, deadline=30
        )
        shadow = ShadowSession(pb.Start(process="asr", language="en"), pool, settings, ())
        shadow.begin()
        shadow.offer(AUDIO)  # no end: the shadow is mid-stream when its primary fails
        async with asyncio.timeout(10):
            await fake.frame_seen.wait()
        await settle(shadow, None, "en", "asr/en", metrics)
        assert counted(metrics, "aborted") == 1
        assert [b.outstanding for b in pool.backends.values()] == [0]
    finally:
        await stop(pool, servers)
