"""What the router remembers of one session, and how it accounts for it when it ends.

`close()` does all of a session's bookkeeping (metrics, the span, the summary line, the
backend's slot, the shadow's settling) without any `await`: grpc may cancel the handler
again while it cleans up (the caller hangs up as soon as it has the final result), and a
CancelledError in the middle would skip the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from services.common import grpc_util
from services.common.logs import session_id_var, summary
from services.common.pb import recognizer_pb2 as pb
from services.common.tracing import SessionSpan
from services.router.metrics import Metrics
from services.router.proxy import ProxySession
from services.router.shadow import ShadowLauncher, ShadowSession


class SessionRecord:
    def __init__(self, log: logging.Logger, incoming: Iterable[Any] | None) -> None:
        self.log = log
        session_id_var.set(grpc_util.metadata_value(incoming, grpc_util.SESSION_ID_KEY))
        self.span = SessionSpan(
            "router",
            grpc_util.metadata_value(incoming, grpc_util.TRACEPARENT_KEY),
            session_id_var.get(),
        )
        # What every backend call carries on: the session id and this tier's trace span.
        self.metadata: tuple[tuple[str, str], ...] = (
            (grpc_util.SESSION_ID_KEY, session_id_var.get()),
        )
        if self.span.traceparent:
            self.metadata += ((grpc_util.TRACEPARENT_KEY, self.span.traceparent),)
        self.began = time.monotonic()
        self.outcome = "ok"
        self.route = "none"
        self.language = ""
        self.proxy: ProxySession | None = None
        self.shadow: ShadowSession | None = None
        self.pump: asyncio.Task[None] | None = None
        self.delivered: list[pb.Finished] = []  # the final result, once the caller has it

    def started(self, start: pb.Start) -> None:
        """The session's start arrived: its language, and its id if the metadata had none."""
        self.language = start.language
        if not session_id_var.get():
            session_id_var.set(start.session_id)
            self.metadata = ((grpc_util.SESSION_ID_KEY, start.session_id), *self.metadata[1:])

    def close(self, metrics: Metrics, shadows: ShadowLauncher) -> None:
        """Account for the session's end, whatever way it ended; never awaits."""
        if self.pump is not None:
            self.pump.cancel()
        if self.shadow is not None:
            final = self.delivered[0] if self.delivered else None
            shadows.settle_later(self.shadow, final, self.language, self.route)
        proxy = self.proxy
        if proxy is not None:
            proxy.close()
            metrics.retries.labels(self.route).inc(proxy.retries)
            metrics.failovers.labels(self.route).inc(proxy.failovers)
            for address in proxy.used:
                metrics.backend_sessions.labels(self.route, address).inc()
        metrics.sessions.labels(self.route, self.outcome).inc()
        self.span.set(route=self.route, failovers=proxy.failovers if proxy else 0)
        self.span.end(self.outcome)
        summary(
            self.log,
            outcome=self.outcome,
            route=self.route,
            backend=proxy.accepted_by if proxy else "",
            backends=proxy.used if proxy else [],
            retries=proxy.retries if proxy else 0,
            failovers=proxy.failovers if proxy else 0,
            shadow=self.shadow.backend if self.shadow else None,
            duration_seconds=round(time.monotonic() - self.began, 3),
        )
