"""The endpoint's error model: refusals before the upgrade, errors after it.

Every failure a client can see is one of these two, and this module is the one place
where backend (gRPC) errors become HTTP statuses and WebSocket close codes. A client gets
the documented code and a generic message; the backend's details (which may name pod
addresses) go to the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import grpc

from services.common import grpc_util

log = logging.getLogger("services.endpoint")


@dataclass
class Refusal(Exception):
    """An HTTP answer instead of the WebSocket upgrade (docs/architecture.md, "Public protocol")."""

    status: int
    code: str
    message: str
    retryable: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "retryable": self.retryable}}


@dataclass
class SessionError(Exception):
    """An error after the upgrade: one JSON error message, then this close code."""

    close_code: int
    code: str
    message: str
    retryable: bool = False


# WebSocket close codes (RFC 6455) as the endpoint uses them.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013


def bad_request(code: str, message: str) -> Refusal:
    return Refusal(400, code, message)


def unavailable(code: str, message: str, retry_after: int) -> Refusal:
    return Refusal(503, code, message, retryable=True, headers={"Retry-After": str(retry_after)})


def _logged(status: grpc.StatusCode, details: str) -> None:
    # Backend details name addresses and pods: for the operator's log, never for the client.
    log.warning("backend failure: %s", details, extra={"grpc_status": status.name})


def refusal_from_grpc(
    status: grpc.StatusCode, details: str, trailing: Any, retry_after: int
) -> Refusal:
    """What the client hears when the backend did not accept the session."""
    status = grpc_util.peer_status(status, details)
    if status == grpc.StatusCode.NOT_FOUND:
        # The router's own words about the request (the supported languages or processes).
        languages = grpc_util.metadata_value(trailing, grpc_util.SUPPORTED_LANGUAGES_KEY)
        code = "unsupported_language" if languages else "unsupported_process"
        return bad_request(code, details)
    if status == grpc.StatusCode.INVALID_ARGUMENT:
        return bad_request("invalid_parameter", details)
    _logged(status, details)
    if status == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return unavailable("no_capacity", "every recogniser for the route is busy", retry_after)
    if status == grpc.StatusCode.UNAVAILABLE:
        return unavailable(
            "backend_unavailable", "no recogniser can take the session now", retry_after
        )
    if status == grpc.StatusCode.DEADLINE_EXCEEDED:
        return unavailable("backend_timeout", "no recogniser accepted in time", retry_after)
    return Refusal(500, "internal_error", "the backend failed")


def session_error_from_grpc(status: grpc.StatusCode, details: str) -> SessionError:
    """What the client hears when the backend fails after the upgrade."""
    status = grpc_util.peer_status(status, details)
    _logged(status, details)
    if status == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return SessionError(CLOSE_TRY_AGAIN, "overloaded", "the backend is overloaded", True)
    if status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return SessionError(CLOSE_INTERNAL, "backend_unavailable", "recognition failed", True)
    return SessionError(CLOSE_INTERNAL, "internal_error", "recognition failed")
