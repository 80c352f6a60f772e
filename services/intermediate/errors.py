"""The intermediate's error model, and its one mapping to gRPC status codes."""

from __future__ import annotations

import grpc


class IntermediateError(Exception):
    """Base of every error that ends a session with a status the router understands."""

    status = grpc.StatusCode.INTERNAL


class BadStart(IntermediateError):
    status = grpc.StatusCode.INVALID_ARGUMENT


class Draining(IntermediateError):
    status = grpc.StatusCode.UNAVAILABLE


class NoEngineUp(IntermediateError):
    """No engine is up: the pod should not be getting sessions (retry elsewhere)."""

    status = grpc.StatusCode.UNAVAILABLE


class PoolExhausted(IntermediateError):
    """Every slot stayed busy for the whole checkout wait (retry elsewhere)."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class EngineLost(IntermediateError):
    """The engine closed, died or failed mid-session (1011 / 1006 / connection error)."""

    status = grpc.StatusCode.UNAVAILABLE


class EngineStuck(EngineLost):
    """The engine owes a reply for longer than the reply timeout."""


class EngineProtocolError(IntermediateError):
    """The engine sent something that is not the engine protocol."""

    status = grpc.StatusCode.INTERNAL
