"""The engine's errors. Every one of them ends a session with a bare close 1011, as
vosk-server does (failures carry no message: docs/engines.md)."""

from __future__ import annotations


class EngineError(Exception):
    """Base of the engine's errors."""


class ProtocolError(EngineError):
    """The client sent something the engine protocol does not allow."""


class DecodeError(EngineError):
    """Decoding failed, timed out, or its worker process died."""
