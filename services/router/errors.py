"""The router's error model, and its one mapping to gRPC status codes (the base and the
errors every internal tier has are in services/common/errors.py).

Each error names the `outcome` it gives a session: the `outcome` label of
`kikimimi_router_sessions_total` and the session summary log line (snake_case, as in every
tier).
"""

from __future__ import annotations

import grpc

from services.common import grpc_util
from services.common.errors import BadStart, Draining, ServiceError

__all__ = [
    "RETRYABLE_AT_START",
    "RETRYABLE_MID_SESSION",
    "BackendFailed",
    "BadStart",
    "Draining",
    "NoBackend",
    "NoRoute",
    "ServiceError",
]

# Backend failures the router may hide by trying another backend.
RETRYABLE_AT_START = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
RETRYABLE_MID_SESSION = frozenset({grpc.StatusCode.UNAVAILABLE})


class NoRoute(ServiceError):
    """No route for (process, language); metadata lists the supported languages."""

    status = grpc.StatusCode.NOT_FOUND
    outcome = "no_route"


class NoBackend(ServiceError):
    """No healthy backend could take the session (retry later)."""

    status = grpc.StatusCode.UNAVAILABLE
    outcome = "no_backend"


class BackendFailed(ServiceError):
    """A backend's error that could not be hidden; keeps the backend's status code."""

    outcome = "backend_failed"

    def __init__(self, status: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.status = status

    @classmethod
    def of_call(cls, code: grpc.StatusCode, details: str | None) -> BackendFailed:
        """A backend call's end as the router must treat it: a status lost to a write
        racing the backend's end counts as UNAVAILABLE (grpc_util.peer_status)."""
        return cls(grpc_util.peer_status(code, details or ""), details or code.name)
