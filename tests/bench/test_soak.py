"""The chaos soak's judgement (bench/soak.py): how a session's end is classified, which
faults it met, and when the run passes. `make soak` itself is not part of `make test`."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
from collections.abc import Awaitable, Callable

from websockets.asyncio.server import ServerConnection, serve

from bench.soak import Fault, Outcome, attribute_faults, report, run_session

AUDIO = random.Random(3).randbytes(3200)  # 100 ms
RIGHT = f"bytes={len(AUDIO)} sha256={hashlib.sha256(AUDIO).hexdigest()[:16]}"
ARGS = argparse.Namespace(duration=1.0, rate=1.0, seed=1)

Handler = Callable[[ServerConnection, bytes], Awaitable[None]]


async def session_against(handler: Handler, grace: float = 5) -> Outcome:
    """run_session against a WebSocket server that reads the audio up to recog-break and
    then answers with `handler`."""

    async def serve_one(ws: ServerConnection) -> None:
        audio = b""
        async for frame in ws:
            if isinstance(frame, bytes):
                audio += frame
            else:
                break  # recog-break
        await handler(ws, audio)

    async with serve(serve_one, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with asyncio.timeout(grace + 10):
            return await run_session(
                f"ws://127.0.0.1:{port}/", "ja", AUDIO, random.Random(1), grace
            )


def finished(text: str) -> str:
    return json.dumps({"status": "recog-finished", "response": [{"result": text}]})


async def test_the_right_final_text_is_ok() -> None:
    async def answer(ws: ServerConnection, audio: bytes) -> None:
        digest = hashlib.sha256(audio).hexdigest()[:16]
        await ws.send(finished(f"bytes={len(audio)} sha256={digest}"))
        await ws.close(1000)

    outcome = await session_against(answer)
    assert (outcome.kind, outcome.detail) == ("ok", "")


async def test_audio_lost_on_the_way_is_a_wrong_text() -> None:
    """A final text whose byte count or hash is not the audio's: a frame lost or doubled."""

    async def answer(ws: ServerConnection, audio: bytes) -> None:
        audio = audio[:-1600]  # one frame fewer than was sent
        digest = hashlib.sha256(audio).hexdigest()[:16]
        await ws.send(finished(f"bytes={len(audio)} sha256={digest}"))
        await ws.close(1000)

    outcome = await session_against(answer)
    assert outcome.kind == "wrong_text"
    assert outcome.failed
    assert RIGHT in outcome.detail


async def test_a_documented_error_and_close_code_is_an_error() -> None:
    async def answer(ws: ServerConnection, audio: bytes) -> None:
        await ws.send(json.dumps({"type": "error", "error": {"code": "backend_unavailable"}}))
        await ws.close(1011)

    outcome = await session_against(answer)
    assert (outcome.kind, outcome.detail) == ("error", "1011 backend_unavailable")
    assert not outcome.failed


async def test_an_error_with_the_wrong_close_code_is_undocumented() -> None:
    async def answer(ws: ServerConnection, audio: bytes) -> None:
        await ws.send(json.dumps({"type": "error", "error": {"code": "backend_unavailable"}}))
        await ws.close(1000)

    outcome = await session_against(answer)
    assert outcome.kind == "undocumented"
    assert outcome.failed


async def test_no_close_is_hung() -> None:
    async def answer(ws: ServerConnection, audio: bytes) -> None:
        await ws.wait_closed()  # never answers; the client gives up and leaves

    outcome = await session_against(answer, grace=0.5)
    assert outcome.kind == "hung"
    assert outcome.failed


def outcome(kind: str, started: float, ended: float, detail: str = "") -> Outcome:
    return Outcome(kind, detail, started, ended)


def test_faults_are_attributed_with_their_aftermath() -> None:
    """A session met a fault if it overlapped it or ended within 5 s after it."""
    faults = [Fault("kill-engine", "engine-ja11", 10.0, 12.0), Fault("kill-router", "r1", 30, 31)]
    sessions = [outcome("ok", 0, 9), outcome("ok", 11, 14), outcome("ok", 16, 20)]
    attribute_faults(sessions, faults)
    assert [s.faults for s in sessions] == [[], ["kill-engine"], ["kill-engine"]]


def test_a_session_that_began_must_end_ok_unless_a_router_was_killed() -> None:
    """Every fault but a killed router is one failover or drain must hide; sessions that
    never began (refused, unreachable) are counted, not lost."""
    sessions = [
        outcome("ok", 0, 1),
        outcome("error", 0, 1, "1011 backend_unavailable"),  # met a keepable fault: lost
        outcome("error", 0, 1, "1011 backend_unavailable"),  # met a killed router: not lost
        outcome("error", 0, 1, "1011 internal_error"),  # met no fault at all: lost
        outcome("refused", 0, 1, "http 503"),
        outcome("unreachable", 0, 1, "ConnectionRefusedError"),
    ]
    for session, faults in zip(
        sessions,
        [[], ["kill-engine"], ["hang-engine", "kill-router"], [], ["term-router"], []],
        strict=True,
    ):
        session.faults = faults
    result = report(ARGS, sessions, [Fault("kill-engine", "e", 0, 1)], [])
    assert result["lost_keepable"] == [
        "error: 1011 backend_unavailable (faults ['kill-engine'])",
        "error: 1011 internal_error (faults [])",
    ]
    assert result["excused"] == [
        "error: 1011 backend_unavailable (faults ['hang-engine', 'kill-router'])"
    ]
    assert result["failures"] == []
    assert result["outcomes"] == {"ok": 1, "error": 3, "refused": 1, "unreachable": 1}
    assert result["faults"] == {"kill-engine": 1}
    assert not result["passed"]


def test_the_run_passes_only_without_failures_lost_sessions_or_leaks() -> None:
    clean = [outcome("ok", 0, 1), outcome("refused", 2, 3, "http 503")]
    assert report(ARGS, clean, [], [])["passed"]
    assert not report(ARGS, clean, [], ["router1: active 1"])["passed"]
    hung = [*clean, outcome("hung", 0, 100, "no close")]
    result = report(ARGS, hung, [], [])
    assert result["failures"] == ["hung: no close (faults [])"]
    assert result["lost_keepable"] == []  # a failure is counted once, as a failure
    assert not result["passed"]
