"""What every transport does with a session: open it on the router, count it while a
backend holds it, and record how it ended (metrics, trace span, one summary line).

The WebSocket flow (`websocket_flow`) and the HTTP flow (`http_flow`) differ only in how
audio comes in and results go out; both go through `SessionFlow` for the rest.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from services.common.logs import session_id_var, summary
from services.common.tracing import SessionSpan
from services.endpoint.backend import BackendStream, RouterClient
from services.endpoint.config import Settings
from services.endpoint.errors import Refusal
from services.endpoint.handshake import SessionParams
from services.endpoint.metrics import Metrics

log = logging.getLogger("services.endpoint")

CLIENT_GONE = "client_gone"


@dataclass(frozen=True)
class SessionStart:
    """A request as it arrives, before admission: its new session id, headers, clock."""

    session_id: str
    headers: dict[str, str]  # names lower-cased
    query: dict[str, str]
    began: float

    @classmethod
    def of(cls, connection: HTTPConnection) -> SessionStart:
        session_id = uuid.uuid4().hex
        session_id_var.set(session_id)  # every log line of the request carries it
        return cls(
            session_id,
            {k.lower(): v for k, v in connection.headers.items()},
            dict(connection.query_params),
            time.monotonic(),
        )


class SessionFlow:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        # The call's deadline outlasts the longest session the endpoint allows (accept,
        # upload, final result), so the endpoint's own limits always answer first.
        deadline = (
            settings.accept_timeout + settings.max_session_seconds + settings.final_timeout + 10
        )
        self.router = RouterClient(settings.router_address, deadline)

    def refused(self, refusal: Refusal) -> JSONResponse:
        """The HTTP answer to a refusal, counted and logged."""
        self.metrics.refusals.labels(str(refusal.status), refusal.code).inc()
        log.info(
            "refused: %s",
            refusal.message,
            extra={"status": refusal.status, "code": refusal.code},
        )
        return JSONResponse(refusal.body(), refusal.status, headers=refusal.headers)

    async def open(self, params: SessionParams, start: SessionStart) -> BackendStream:
        """Open the session on the router and wait for a backend's `accepted`; raises
        Refusal. Cancelled (the client left), it cancels the router stream and ends the span."""
        span = SessionSpan("endpoint", start.headers.get("traceparent", ""), start.session_id)
        span.set(process=params.process, language=params.language)
        try:
            stream = await self.router.open(
                start.session_id,
                params,
                span.traceparent,
                self.settings.accept_timeout,
                self.settings.retry_after_seconds,
            )
        except Refusal as refusal:
            span.end(refusal.code)
            raise
        except BaseException:
            span.end(CLIENT_GONE)
            raise
        stream.span = span
        return stream

    @contextlib.contextmanager
    def accepted(self, process: str) -> Iterator[None]:
        """The active-sessions gauge, for sessions a backend accepted (bounded labels)."""
        self.metrics.active.labels(process).inc()
        try:
            yield
        finally:
            self.metrics.active.labels(process).dec()

    def abandoned(self, transport: str, params: SessionParams, start: SessionStart) -> None:
        """The client left while the backend was being asked (before any `accepted`)."""
        self.metrics.abandoned_handshakes.inc()
        # Not in sessions_total: process and language are not validated by a route yet.
        summary(
            log,
            transport=transport,
            mimi_process=params.process,  # `process` is a LogRecord attribute
            language=params.language,
            outcome=CLIENT_GONE,
            backend="",
            audio_seconds=0.0,
            duration_seconds=round(time.monotonic() - start.began, 3),
        )

    def ended(
        self,
        transport: str,
        params: SessionParams,
        stream: BackendStream,
        start: SessionStart,
        outcome: str,
        audio_seconds: float,
        **fields: Any,
    ) -> None:
        """An accepted session ended: cancel what is left of the call, record it."""
        stream.cancel()
        stream.finish(outcome)
        self.metrics.sessions.labels(params.process, params.language, outcome).inc()
        self.metrics.audio_seconds.labels(params.process).inc(audio_seconds)
        summary(
            log,
            transport=transport,
            mimi_process=params.process,
            language=params.language,
            outcome=outcome,
            backend=stream.accepted.backend,
            audio_seconds=round(audio_seconds, 3),
            duration_seconds=round(time.monotonic() - start.began, 3),
            **fields,
        )

    async def close(self) -> None:
        await self.router.close()
