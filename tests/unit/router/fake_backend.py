"""An in-process gRPC Recognizer backend that answers predictably or fails on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from services.common.pb import recognizer_pb2 as pb
from services.common.pb import recognizer_pb2_grpc as pb_grpc
from services.router.backends import Backend, BackendPool

FRAME = b"\x00\x01" * 800  # 50 ms


class FakeBackend(pb_grpc.RecognizerServicer):
    """A backend that answers each audio frame with a segment of 100 ms, or fails on purpose.

    `hang`: read start, then never accept. `started` is set once a start arrived and
    `frame_seen` once an audio frame did (a test waits for them instead of sleeping).
    """

    def __init__(
        self, refuse: bool = False, fail_after: int | None = None, hang: bool = False
    ) -> None:
        self.refuse = refuse
        self.fail_after = fail_after
        self.hang = hang
        self.frames_seen = 0
        self.started = asyncio.Event()
        self.frame_seen = asyncio.Event()

    async def Recognize(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[pb.RecognizeRequest],
        context: grpc.aio.ServicerContext[pb.RecognizeRequest, pb.RecognizeResponse],
    ) -> None:
        await anext(request_iterator)
        self.started.set()
        if self.hang:
            await asyncio.Event().wait()  # until the caller cancels the call
        if self.refuse:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no engine up")
        await context.write(pb.RecognizeResponse(accepted=pb.Accepted(backend="fake")))
        texts = []
        async for request in request_iterator:
            if request.HasField("end"):
                break
            index = len(texts)
            if self.fail_after is not None and index == self.fail_after:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "engine lost")
            self.frames_seen += 1
            self.frame_seen.set()
            texts.append(f"s{index}")
            word = pb.Word(text=texts[-1], start_ms=index * 100, end_ms=index * 100 + 100)
            segment = pb.Segment(
                text=texts[-1], words=[word], start_ms=index * 100, end_ms=index * 100 + 100
            )
            await context.write(pb.RecognizeResponse(segment=segment))
        await context.write(pb.RecognizeResponse(finished=pb.Finished(text=" ".join(texts))))


async def start(backends: list[FakeBackend]) -> tuple[BackendPool, list[grpc.aio.Server]]:
    pool = BackendPool("ja", [])
    servers = []
    for fake in backends:
        server = grpc.aio.server()
        pb_grpc.add_RecognizerServicer_to_server(fake, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        backend = Backend(f"127.0.0.1:{port}")
        backend.healthy = True  # no health watch: these fakes are healthy by decree
        pool.backends[backend.address] = backend
    return pool, servers


async def stop(pool: BackendPool, servers: list[grpc.aio.Server]) -> None:
    for backend in pool.backends.values():
        await backend.close()
    for server in servers:
        await server.stop(None)
