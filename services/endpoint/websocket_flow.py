"""The WebSocket flow of one client: admission, the backend's `accepted`, then the upgrade
and the session (`session.WebSocketSession`), recorded whichever way it ends.

The upgrade waits for the backend (a refusal is a real HTTP answer). While it waits the
client may leave: the flow watches for that and cancels the router stream at once, so the
backend's slot is freed and the session still gets its summary line.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from services.endpoint.admission import Admission
from services.endpoint.audio import AudioNormaliser
from services.endpoint.backend import BackendStream
from services.endpoint.errors import Refusal
from services.endpoint.flow import CLIENT_GONE, SessionFlow, SessionStart
from services.endpoint.formats import ResultFormatter
from services.endpoint.handshake import SessionParams
from services.endpoint.session import SessionLimits, SessionOutcome, WebSocketSession

TRANSPORT = "websocket"


@dataclass(eq=False)
class WebSocketFlow:
    admission: Admission
    flow: SessionFlow
    limits: SessionLimits
    drain_expired: asyncio.Event

    async def __call__(self, ws: WebSocket) -> None:
        start = SessionStart.of(ws)
        try:
            with self.admission.admitted(start.headers, start.query) as applicant:
                params = applicant.params
                stream = await self._open_unless_client_leaves(ws, params, start)
                if stream is None:
                    self.flow.abandoned(TRANSPORT, params, start)
                    return
                result = SessionOutcome(outcome="internal_error")
                try:
                    with self.flow.accepted(params.process):
                        result = await self._run(ws, stream, params, start.session_id)
                finally:
                    self._record(params, stream, start, result)
        except Refusal as refusal:  # only before the upgrade
            with contextlib.suppress(OSError):  # the client may be gone already
                await ws.send_denial_response(self.flow.refused(refusal))

    async def _run(
        self, ws: WebSocket, stream: BackendStream, params: SessionParams, session_id: str
    ) -> SessionOutcome:
        try:
            await ws.accept()
        except (WebSocketDisconnect, OSError):  # gone between the wait and the upgrade
            return SessionOutcome(outcome=CLIENT_GONE)
        session = WebSocketSession(
            ws,
            stream,
            ResultFormatter(params.process, params.language, params.options, session_id),
            AudioNormaliser(params.audio, self.limits.max_session_seconds),
            self.limits,
            self.drain_expired,
        )
        return await session.run()

    async def _open_unless_client_leaves(
        self, ws: WebSocket, params: SessionParams, start: SessionStart
    ) -> BackendStream | None:
        """The accepted stream; None if the client left first (the open is cancelled)."""
        opening = asyncio.create_task(self.flow.open(params, start), name="open")
        leaving = asyncio.create_task(_client_leaves(ws), name="client-leaves")
        try:
            await asyncio.wait((opening, leaving), return_when=asyncio.FIRST_COMPLETED)
        finally:
            leaving.cancel()
            if not opening.done():
                opening.cancel()  # the client left (or this task is cancelled)
        # gather, not a bare await: a cancellation of this task still propagates.
        (opened,) = await asyncio.gather(opening, return_exceptions=True)
        await asyncio.gather(leaving, return_exceptions=True)
        if isinstance(opened, BackendStream):
            return opened
        if isinstance(opened, asyncio.CancelledError):
            return None
        raise opened  # a Refusal, for the caller to answer

    def _record(
        self,
        params: SessionParams,
        stream: BackendStream,
        start: SessionStart,
        result: SessionOutcome,
    ) -> None:
        self.flow.ended(
            TRANSPORT,
            params,
            stream,
            start,
            result.outcome,
            result.audio_seconds,
            close_code=result.close_code,
            first_result_seconds=result.first_result_seconds,
            final_after_break_seconds=result.final_after_break_seconds,
        )
        metrics = self.flow.metrics
        if result.first_result_seconds is not None:
            metrics.first_result.observe(result.first_result_seconds)
        if result.final_after_break_seconds is not None:
            metrics.final_latency.observe(result.final_after_break_seconds)


async def _client_leaves(ws: WebSocket) -> None:
    """Return when the client disconnects before the upgrade (nothing else can arrive)."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass  # the first message is `websocket.connect`
