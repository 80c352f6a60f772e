"""The base of the internal tiers' error trees (router, intermediate) and the errors both have.

An error names the gRPC `status` the caller receives and the `outcome` it gives the session:
the `outcome` label of the tier's sessions metric and of its session summary log line
(snake_case in every tier, docs/observability.md). `metadata` goes out as trailing metadata.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """Ends a session with `status`; what is not one of these is an internal error."""

    status = grpc.StatusCode.INTERNAL
    outcome = "internal_error"

    def __init__(self, message: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.metadata = metadata


class BadStart(ServiceError):
    """The session's first message is not a valid start."""

    status = grpc.StatusCode.INVALID_ARGUMENT
    outcome = "bad_start"


class Draining(ServiceError):
    """The process is draining after SIGTERM: it takes no new session (retry elsewhere)."""

    status = grpc.StatusCode.UNAVAILABLE
    outcome = "draining"
