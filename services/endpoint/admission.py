"""Admission, without transport: may this request open a session, and under what count?

Everything decided before the backend is asked: the handshake's parameters, the browser
origin, the token, this process's session cap and drain. The WebSocket and HTTP flows call
it alike and turn its `Refusal` into their own HTTP answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from services.common.sessions import SessionTracker
from services.endpoint.auth import Authenticator
from services.endpoint.config import Settings
from services.endpoint.errors import Refusal, unavailable
from services.endpoint.handshake import SessionParams, parse_handshake
from services.endpoint.metrics import Metrics


class Admission:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.auth = Authenticator(settings)
        # Keyed by process: the per-process cap counts handshakes in progress too.
        self.tracker = SessionTracker(
            drain_seconds=settings.drain_seconds,
            draining_gauge=metrics.draining,
            grace_seconds=5,  # a session's error message and close handshake with a slow client
        )

    def check(self, headers: Mapping[str, str], query: Mapping[str, str]) -> SessionParams:
        """Parameters, origin and token of a request; raises a Refusal (400/401/403)."""
        params = parse_handshake(headers, query)
        self._check_origin(headers)
        self.auth.check(params.token, params.process)
        return params

    def _check_origin(self, headers: Mapping[str, str]) -> None:
        origin = headers.get("origin")
        allowed = self.settings.allowed_origins
        if origin and "*" not in allowed and origin not in allowed:
            raise Refusal(403, "origin_not_allowed", f"origin {origin!r} is not allowed")

    @contextlib.contextmanager
    def counted(self, params: SessionParams) -> Iterator[None]:
        """Count a session (handshake included) against its process's cap while it runs."""
        with self.tracker.session(params.process):
            yield

    def admit(self, params: SessionParams) -> None:
        """Refuse (503) a counted session while draining or over its process's cap."""
        retry_after = self.settings.retry_after_seconds
        if self.tracker.draining:
            raise unavailable("draining", "the server is shutting down", retry_after)
        # The tracker already counts this session (`counted` wraps the call).
        if self.tracker.count(params.process) > self.settings.max_sessions_per_process:
            raise unavailable(
                "too_many_sessions",
                f"the concurrent session limit for {params.process} is reached",
                retry_after,
            )
