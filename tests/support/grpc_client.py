"""Talk to a real intermediate as the router does: one session over gRPC, and its HTTP probes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from services.common import grpc_util
from services.common.audio import SAMPLE_RATE
from services.common.pb import recognizer_pb2 as pb
from services.common.pb import recognizer_pb2_grpc as pb_grpc
from tests.support.audio import FRAME
from tests.support.http import readiness
from tests.support.processes import Service
from tests.support.timing import eventually, scaled

SESSION_TIMEOUT = 30.0


@dataclass
class Outcome:
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""
    responses: list[pb.RecognizeResponse] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def backend(self) -> str:
        return next((r.accepted.backend for r in self.responses if r.HasField("accepted")), "")

    @property
    def finished(self) -> pb.Finished:
        assert self.responses, "no response"
        assert self.responses[-1].HasField("finished"), self.responses
        return self.responses[-1].finished


def start_request(rate: int = SAMPLE_RATE, language: str = "ja") -> pb.RecognizeRequest:
    audio = pb.AudioFormat(encoding=pb.AudioFormat.LINEAR16, sample_rate_hz=rate, channels=1)
    return pb.RecognizeRequest(
        start=pb.Start(session_id="test", process="asr", language=language, audio=audio)
    )


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of `events` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def recognize(
    service: Service,
    audio: bytes,
    *,
    rate: int = SAMPLE_RATE,
    frame: int = FRAME,
    hold: asyncio.Event | None = None,
    accepted: asyncio.Event | None = None,
    within: float = SESSION_TIMEOUT,
    leave_after_finished: bool = False,
) -> Outcome:
    """Send start; once accepted, stream `audio` in frames, then `end`.

    As the router does, audio follows `accepted`. With `hold`, `end` waits until it is set
    (or the call ends): the client then writes nothing while the server fails the session.
    `leave_after_finished`: cancel the call once `finished` arrives, without reading on.
    A write racing the server's final status can make grpc's aio client report INTERNAL
    instead of the server's code (grpc/grpc#36066); the tests avoid that race.
    """
    outcome = Outcome()
    accepted = accepted or asyncio.Event()
    ended = asyncio.Event()

    async def requests() -> AsyncIterator[pb.RecognizeRequest]:
        yield start_request(rate)
        await _first(accepted, ended)
        if ended.is_set():
            return
        for offset in range(0, len(audio), frame):
            yield pb.RecognizeRequest(audio=audio[offset : offset + frame])
        if hold is not None:
            await _first(hold, ended)
            if ended.is_set():
                return
        yield pb.RecognizeRequest(end=pb.End())

    began = time.monotonic()
    address = f"127.0.0.1:{service.ports['grpc']}"
    async with grpc.aio.insecure_channel(address, options=grpc_util.CHANNEL_OPTIONS) as channel:
        call = pb_grpc.RecognizerStub(channel).Recognize(requests(), timeout=scaled(within))
        try:
            async for response in call:
                outcome.responses.append(response)
                if response.HasField("accepted"):
                    accepted.set()
                if leave_after_finished and response.HasField("finished"):
                    call.cancel()  # as the router does: it has all it needs
                    break
        except grpc.aio.AioRpcError as exc:
            outcome.code, outcome.details = exc.code(), exc.details() or ""
        finally:
            ended.set()
    outcome.seconds = time.monotonic() - began
    return outcome


async def accepted_session(
    service: Service, audio: bytes, hold: asyncio.Event, within: float = 15
) -> asyncio.Task[Outcome]:
    """A session that streams `audio` and then waits for `hold`, returned once the service
    accepted it (the task's result is its outcome)."""
    accepted = asyncio.Event()
    session = asyncio.create_task(recognize(service, audio, hold=hold, accepted=accepted))
    await asyncio.wait_for(accepted.wait(), scaled(within))
    return session


async def wait_engines_up(service: Service, count: int, within: float = 10) -> None:
    """Wait until the intermediate reports `count` engines up (ready needs only one)."""

    async def all_up() -> bool:
        _, body = await readiness(service)
        return sum(engine["state"] == "up" for engine in body["engines"]) == count

    await eventually(all_up, within=within, what=f"{count} engines were not up")


async def wait_readiness(
    service: Service, status: int, within: float
) -> tuple[float, dict[str, Any]]:
    """Wait until /readiness answers `status`; return how long it took and the body."""
    began = time.monotonic()

    async def answers() -> dict[str, Any] | None:
        code, body = await readiness(service)
        return body if code == status else None

    body = await eventually(answers, within=within, what=f"/readiness did not answer {status}")
    return time.monotonic() - began, body
