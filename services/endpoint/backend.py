"""The endpoint's side of the router stream: open a session, send audio, read results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from services.common import grpc_util
from services.common.audio import SAMPLE_RATE
from services.common.pb import recognizer_pb2 as pb
from services.common.pb import recognizer_pb2_grpc as pb_grpc
from services.common.tracing import SessionSpan
from services.endpoint.errors import (
    Refusal,
    SessionError,
    refusal_from_grpc,
    session_error_from_grpc,
)
from services.endpoint.handshake import SessionParams

Call = grpc.aio.StreamStreamCall[pb.RecognizeRequest, pb.RecognizeResponse]
LIST_ROUTES_DEADLINE_SECONDS = 5.0


class BackendStream:
    """One accepted session on the router."""

    def __init__(self, call: Call, accepted: pb.Accepted) -> None:
        self.call = call
        self.accepted = accepted
        self.span: SessionSpan | None = None  # this tier's trace span of the session

    def finish(self, outcome: str) -> None:
        """Record how the session ended (its trace span); the call is cancelled separately."""
        if self.span is not None:
            self.span.end(outcome)
            self.span = None

    async def send_audio(self, pcm: bytes) -> None:
        try:
            await self.call.write(pb.RecognizeRequest(audio=pcm))
        except grpc.aio.AioRpcError as exc:
            raise session_error_from_grpc(exc.code(), exc.details() or "") from exc
        except (asyncio.InvalidStateError, grpc.aio.UsageError):
            pass  # the call already ended; the result side reports why

    async def end(self) -> None:
        try:
            await self.call.write(pb.RecognizeRequest(end=pb.End()))
            await self.call.done_writing()
        except grpc.aio.AioRpcError as exc:
            raise session_error_from_grpc(exc.code(), exc.details() or "") from exc
        except (asyncio.InvalidStateError, grpc.aio.UsageError):
            pass

    async def results(self) -> AsyncIterator[pb.RecognizeResponse]:
        """Every result until `finished`; a backend error raises SessionError."""
        while True:
            try:
                reply = await self.call.read()
            except grpc.aio.AioRpcError as exc:
                raise session_error_from_grpc(exc.code(), exc.details() or "") from exc
            if reply is grpc_util.EOF:
                code = await self.call.code()
                raise session_error_from_grpc(
                    code if code != grpc.StatusCode.OK else grpc.StatusCode.INTERNAL,
                    await self.call.details() or "the backend ended without a final result",
                )
            assert isinstance(reply, pb.RecognizeResponse)
            yield reply
            if reply.HasField("finished"):
                return

    def cancel(self) -> None:
        self.call.cancel()


class RouterClient:
    def __init__(self, address: str, deadline: float) -> None:
        # Several routers (a headless Service): per stream over those that are SERVING.
        options = grpc_util.balanced_channel_options(address)
        self.channel = grpc.aio.insecure_channel(address, options=options)
        self.stub = pb_grpc.RecognizerStub(self.channel)
        self.directory = pb_grpc.RouteDirectoryStub(self.channel)
        self.deadline = deadline

    async def list_routes(
        self, deadline: float = LIST_ROUTES_DEADLINE_SECONDS
    ) -> dict[str, list[str]]:
        """Each process of the router's route table with its languages, in the router's order
        (sorted). Raises grpc.aio.AioRpcError: UNAVAILABLE when no router answers,
        DEADLINE_EXCEEDED when one does not within `deadline` seconds."""
        reply = await self.directory.ListRoutes(pb.ListRoutesRequest(), timeout=deadline)
        routes: dict[str, list[str]] = {}
        for route in reply.routes:
            routes.setdefault(route.process, []).append(route.language)
        return routes

    async def open(
        self,
        session_id: str,
        params: SessionParams,
        traceparent: str,
        accept_timeout: float,
        retry_after: int,
    ) -> BackendStream:
        """Start a session and wait until a backend accepted it; or raise a Refusal."""
        metadata = [(grpc_util.SESSION_ID_KEY, session_id)]
        if traceparent:
            metadata.append((grpc_util.TRACEPARENT_KEY, traceparent))
        # grpc-stubs (1.53) does not know that a stream call may start without an iterator.
        call: Call = self.stub.Recognize(  # type: ignore[call-arg]
            metadata=metadata, timeout=self.deadline
        )
        start = pb.Start(
            session_id=session_id,
            process=params.process,
            language=params.language,
            audio=pb.AudioFormat(
                encoding=pb.AudioFormat.LINEAR16, sample_rate_hz=SAMPLE_RATE, channels=1
            ),
            options=params.options.as_map(),
        )
        try:
            await call.write(pb.RecognizeRequest(start=start))
            async with asyncio.timeout(accept_timeout):
                reply = await call.read()
        except TimeoutError:
            call.cancel()
            raise refusal_from_grpc(
                grpc.StatusCode.DEADLINE_EXCEEDED, "no backend accepted in time", None, retry_after
            ) from None
        except grpc.aio.AioRpcError as exc:
            raise refusal_from_grpc(
                exc.code(), exc.details() or "", exc.trailing_metadata(), retry_after
            ) from None
        except BaseException:
            call.cancel()  # cancelled (the client left): the backend must free its slot now
            raise
        if reply is grpc_util.EOF or not isinstance(reply, pb.RecognizeResponse):
            code = await call.code()
            raise refusal_from_grpc(
                code, await call.details() or "", await call.trailing_metadata(), retry_after
            )
        if not reply.HasField("accepted"):
            call.cancel()
            raise Refusal(500, "internal_error", "the backend did not accept the session properly")
        return BackendStream(call, reply.accepted)

    async def close(self) -> None:
        await self.channel.close(grace=None)


__all__ = ["BackendStream", "RouterClient", "SessionError"]
