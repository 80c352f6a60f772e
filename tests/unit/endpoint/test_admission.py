"""Admission without transport: the session caps per process and per token, and drain."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import jwt
import pytest

from services.endpoint.admission import Admission
from services.endpoint.config import Settings
from services.endpoint.errors import Refusal
from services.endpoint.metrics import Metrics

SECRET = "a-long-enough-shared-secret-for-hs256-tests"
HEADERS = {"x-mimi-process": "asr", "x-mimi-input-language": "ja"}


def admission(tmp_path: Path, **settings: object) -> Admission:
    key = tmp_path / "secret"
    key.write_text(SECRET)
    return Admission(Settings(auth="jwt", jwt_key_file=key, **settings), Metrics())


def as_client(sub: str, process: str = "asr") -> dict[str, str]:
    token = jwt.encode({"sub": sub, "scope": "asr nict-asr", "exp": time.time() + 60}, SECRET)
    return {**HEADERS, "x-mimi-process": process, "authorization": f"Bearer {token}"}


def refused(admission: Admission, headers: dict[str, str]) -> tuple[int, str]:
    with pytest.raises(Refusal) as caught, admission.admitted(headers, {}):
        pass
    return caught.value.status, caught.value.code


def test_a_token_at_its_limit_is_429_and_others_are_not(tmp_path: Path) -> None:
    gate = admission(tmp_path, max_sessions_per_token=2)
    with contextlib.ExitStack() as sessions:
        for _ in range(2):
            sessions.enter_context(gate.admitted(as_client("alice"), {}))
        assert refused(gate, as_client("alice", "nict-asr")) == (429, "too_many_sessions_per_token")
        with gate.admitted(as_client("bob"), {}):
            pass
    with gate.admitted(as_client("alice"), {}):  # her sessions ended: her share is back
        assert gate.tracker.by_key() == {"asr": 1}


def test_the_process_cap_counts_every_client(tmp_path: Path) -> None:
    gate = admission(tmp_path, max_sessions_per_process=1)
    with gate.admitted(as_client("alice"), {}):
        assert refused(gate, as_client("bob")) == (503, "too_many_sessions")
        with gate.admitted(as_client("bob", "nict-asr"), {}):
            pass  # another process has its own cap
    assert gate.tracker.by_key() == {}


def test_a_refused_request_does_not_count(tmp_path: Path) -> None:
    gate = admission(tmp_path, max_sessions_per_token=1)
    with gate.admitted(as_client("alice"), {}):
        for _ in range(3):
            refused(gate, as_client("alice"))
        assert gate.tracker.by_key() == {"asr": 1}
    with gate.admitted(as_client("alice"), {}):
        pass


def test_draining_refuses_new_sessions_with_503(tmp_path: Path) -> None:
    gate = admission(tmp_path)
    gate.tracker.start_draining()
    assert refused(gate, as_client("alice")) == (503, "draining")
