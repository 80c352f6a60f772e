"""The one mapping from backend (gRPC) failures to what the client sees."""

from __future__ import annotations

import logging

import grpc
import pytest

from services.common import grpc_util
from services.endpoint.errors import refusal_from_grpc, session_error_from_grpc

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("status", "trailing", "expected"),
    [
        (
            Code.NOT_FOUND,
            ((grpc_util.SUPPORTED_LANGUAGES_KEY, "ja,en"),),
            (400, "unsupported_language", False),
        ),
        (
            Code.NOT_FOUND,
            ((grpc_util.SUPPORTED_PROCESSES_KEY, "asr"),),
            (400, "unsupported_process", False),
        ),
        (Code.INVALID_ARGUMENT, (), (400, "invalid_parameter", False)),
        (Code.UNAVAILABLE, (), (503, "backend_unavailable", True)),
        (Code.RESOURCE_EXHAUSTED, (), (503, "no_capacity", True)),
        (Code.DEADLINE_EXCEEDED, (), (503, "backend_timeout", True)),
        (Code.INTERNAL, (), (500, "internal_error", False)),
    ],
)
def test_refusals_before_the_upgrade(
    status: grpc.StatusCode, trailing: tuple[tuple[str, str], ...], expected: tuple[int, str, bool]
) -> None:
    """Each backend status at session start becomes its documented HTTP refusal."""
    refusal = refusal_from_grpc(status, "details", trailing, 7)
    assert (refusal.status, refusal.code, refusal.retryable) == expected
    if refusal.status == 503:
        assert refusal.headers == {"Retry-After": "7"}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Code.RESOURCE_EXHAUSTED, (1013, "overloaded", True)),
        (Code.UNAVAILABLE, (1011, "backend_unavailable", True)),
        (Code.DEADLINE_EXCEEDED, (1011, "backend_unavailable", True)),
        (Code.INTERNAL, (1011, "internal_error", False)),
        (Code.UNKNOWN, (1011, "internal_error", False)),
    ],
)
def test_errors_after_the_upgrade(status: grpc.StatusCode, expected: tuple[int, str, bool]) -> None:
    """Each backend status mid-session becomes its documented close code."""
    error = session_error_from_grpc(status, "details")
    assert (error.close_code, error.code, error.retryable) == expected


INTERNAL_DETAILS = "backend 10.12.3.4:50052 failed: connection refused (pod intermediate-ja-7f9c)"


@pytest.mark.parametrize(
    "status",
    [
        Code.UNAVAILABLE,
        Code.RESOURCE_EXHAUSTED,
        Code.DEADLINE_EXCEEDED,
        Code.INTERNAL,
        Code.UNKNOWN,
    ],
)
def test_backend_details_never_reach_the_client(
    status: grpc.StatusCode, caplog: pytest.LogCaptureFixture
) -> None:
    """Server-side failures give the client the code and a generic message; the details
    (addresses, pod names) go to the log only."""
    caplog.set_level(logging.INFO, "services.endpoint")
    refusal = refusal_from_grpc(status, INTERNAL_DETAILS, (), 7)
    error = session_error_from_grpc(status, INTERNAL_DETAILS)
    for message in (refusal.message, error.message):
        assert "10.12.3.4" not in message
        assert "intermediate-ja" not in message
        assert message
    assert INTERNAL_DETAILS in caplog.text


def test_a_status_lost_to_a_racing_write_is_backend_unavailable() -> None:
    """When the endpoint's write races the router ending the call, grpc-python reports
    INTERNAL "Internal error from Core" instead of the router's status (grpc/grpc#36066):
    the router ended the session, so the client hears the retryable backend_unavailable
    (503 before the upgrade, 1011 after it), not internal_error."""
    lost = grpc_util.LOCAL_WRITE_FAILURE_DETAILS
    refusal = refusal_from_grpc(Code.INTERNAL, lost, (), 7)
    assert (refusal.status, refusal.code, refusal.retryable) == (503, "backend_unavailable", True)
    error = session_error_from_grpc(Code.INTERNAL, lost)
    assert (error.close_code, error.code, error.retryable) == (1011, "backend_unavailable", True)
