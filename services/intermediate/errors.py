"""The intermediate's error model, and its one mapping to gRPC status codes (the base and
the errors every internal tier has are in services/common/errors.py).

Each error names the `outcome` it gives a session (the `outcome` label of the sessions
metric and the session summary log line) and the gRPC status the router receives.
UNAVAILABLE and RESOURCE_EXHAUSTED are retryable: the router fails over.
"""

from __future__ import annotations

import grpc

from services.common.errors import BadStart, Draining, ServiceError

__all__ = [
    "OUTCOMES",
    "BadStart",
    "Draining",
    "EngineLost",
    "EngineProtocolError",
    "EngineStuck",
    "NoEngineUp",
    "PoolExhausted",
    "ServiceError",
]


class NoEngineUp(ServiceError):
    """No engine is up: the pod should not be getting sessions (retry elsewhere)."""

    status = grpc.StatusCode.UNAVAILABLE
    outcome = "no_engine_up"


class PoolExhausted(ServiceError):
    """Every slot stayed busy for the whole checkout wait (retry elsewhere)."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    outcome = "pool_exhausted"


class EngineLost(ServiceError):
    """The engine closed, died or failed mid-session (1011 / 1006 / connection error)."""

    status = grpc.StatusCode.UNAVAILABLE
    outcome = "engine_lost"


class EngineStuck(EngineLost):
    """The engine owes a reply for longer than the reply timeout."""

    outcome = "engine_stuck"


class EngineProtocolError(ServiceError):
    """The engine sent something that is not the engine protocol."""

    status = grpc.StatusCode.INTERNAL
    outcome = "engine_protocol_error"


# Every outcome a session can end with (bounded label values, known in advance).
OUTCOMES = (
    "ok",
    "cancelled",
    *(
        cls.outcome
        for cls in (
            ServiceError,
            BadStart,
            Draining,
            NoEngineUp,
            PoolExhausted,
            EngineLost,
            EngineStuck,
            EngineProtocolError,
        )
    ),
)
