"""Admission, without transport: may this request open a session, and under what count?

Everything decided before the backend is asked: the handshake's parameters, the browser
origin, the token, this process's session cap and drain. The WebSocket and HTTP flows call
it alike and turn its `Refusal` into their own HTTP answer.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from services.common.sessions import SessionTracker
from services.endpoint.auth import Authenticator
from services.endpoint.config import Settings
from services.endpoint.errors import Refusal, unavailable
from services.endpoint.handshake import SessionParams, parse_handshake
from services.endpoint.metrics import Metrics


@dataclass(frozen=True)
class Applicant:
    """A request that passed the checks: its parameters, and whom its token names."""

    params: SessionParams
    subject: str  # "" with auth off


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
        self._by_subject: Counter[str] = Counter()

    def check(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Applicant:
        """Parameters, origin and token of a request; raises a Refusal (400/401/403)."""
        params = parse_handshake(headers, query)
        self._check_origin(headers)
        return Applicant(params, self.auth.check(params.token, params.process))

    def _check_origin(self, headers: Mapping[str, str]) -> None:
        origin = headers.get("origin")
        allowed = self.settings.allowed_origins
        if origin and "*" not in allowed and origin not in allowed:
            raise Refusal(403, "origin_not_allowed", f"origin {origin!r} is not allowed")

    @contextlib.contextmanager
    def admitted(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Iterator[Applicant]:
        """Check a request, count it while the block runs and admit it; raises a Refusal."""
        applicant = self.check(headers, query)
        with self.counted(applicant):
            self.admit(applicant)
            yield applicant

    @contextlib.contextmanager
    def counted(self, applicant: Applicant) -> Iterator[None]:
        """Count a session (handshake included) against its process's and its token's caps
        while it runs."""
        subject = applicant.subject
        self._by_subject[subject] += 1
        try:
            with self.tracker.session(applicant.params.process):
                yield
        finally:
            self._by_subject[subject] -= 1
            if self._by_subject[subject] <= 0:
                del self._by_subject[subject]  # one key per client in flight, no more

    def admit(self, applicant: Applicant) -> None:
        """Refuse a counted session while draining or over its process's cap (503), or
        over its token's (429); each with Retry-After."""
        retry_after = self.settings.retry_after_seconds
        process = applicant.params.process
        if self.tracker.draining:
            raise unavailable("draining", "the server is shutting down", retry_after)
        # The counts already include this session (`counted` wraps the call).
        if self.tracker.count(process) > self.settings.max_sessions_per_process:
            raise unavailable(
                "too_many_sessions",
                f"the concurrent session limit for {process} is reached",
                retry_after,
            )
        limit = self.settings.max_sessions_per_token
        if applicant.subject and self._by_subject[applicant.subject] > limit:
            raise Refusal(
                429,
                "too_many_sessions_per_token",
                f"this token already holds {limit} sessions here; end one or wait",
                retryable=True,
                headers={"Retry-After": str(retry_after)},
            )
