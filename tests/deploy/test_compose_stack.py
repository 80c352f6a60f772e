"""Checks of the running docker compose stack (`make test-containers` runs them).

They need the stack, so they are marked `compose`, which plain `make test` deselects;
`.ci/containers.sh` selects them and sets KIKIMIMI_TEST_ENDPOINT after `up --wait`.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import jiwer
import pytest

from tests.support.client import mimi_headers, refusal, stream_session
from tests.system.engine.engine_helpers import speak

pytestmark = pytest.mark.compose

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Published HTTP and engine ports (docker-compose.yaml), as moved by KIKIMIMI_PORT_*.
HTTP_PORTS = {"ROUTER_HTTP": 8081, "INTERMEDIATE_JA_HTTP": 8082, "INTERMEDIATE_EN_HTTP": 8083}
ENGINE_PORTS = {"ENGINE_JA": 2700, "ENGINE_EN": 2701}


def port(name: str, default: int) -> int:
    return int(os.environ.get(f"KIKIMIMI_PORT_{name}", default))


@pytest.fixture(scope="module")
def endpoint() -> tuple[str, str]:
    """(ws:// URL, token) of the compose stack's endpoint on 127.0.0.1."""
    http = os.environ.get("KIKIMIMI_TEST_ENDPOINT", "").rstrip("/")
    if not http:
        pytest.fail(
            "needs the compose stack: run `make test-containers`, which sets KIKIMIMI_TEST_ENDPOINT"
        )
    assert http.startswith("http://127.0.0.1:"), "tests talk to 127.0.0.1 only"
    return "ws" + http.removeprefix("http") + "/", os.environ.get("KIKIMIMI_TEST_TOKEN", "")


@pytest.mark.timeout(30)
def test_every_tier_is_ready_on_loopback(endpoint: tuple[str, str]) -> None:
    """Router and both intermediates answer /readiness 200, and both engine ports accept."""
    for name, default in HTTP_PORTS.items():
        response = httpx.get(f"http://127.0.0.1:{port(name, default)}/readiness", timeout=5)
        assert response.status_code == 200, (name, response.text)
    for name, default in ENGINE_PORTS.items():
        socket.create_connection(("127.0.0.1", port(name, default)), timeout=5).close()


@pytest.mark.timeout(30)
async def test_stack_refuses_a_session_without_a_token(endpoint: tuple[str, str]) -> None:
    """Auth is on in the compose stack: no token is a 401 before the upgrade."""
    url, _ = endpoint
    status, body, headers = await refusal(url, mimi_headers("asr", "en"))
    assert status == 401
    assert body["error"]["code"]
    assert headers["www-authenticate"].startswith("Bearer")


def asr_text(finished: dict[str, Any]) -> str:
    return "".join(w["result"] for w in finished["response"]) if finished.get("response") else ""


@pytest.mark.timeout(150)
async def test_japanese_goes_through_the_whisper_engine(endpoint: tuple[str, str]) -> None:
    """The Japanese fixture comes back from the Whisper engine close to production's text."""
    url, token = endpoint
    audio = (FIXTURES / "ja-chotto-osoi-chushoku.raw").read_bytes()
    expected = json.loads((FIXTURES / "ja-chotto-osoi-chushoku.expected.json").read_text())
    result = await stream_session(url, audio, mimi_headers("asr", "ja", token=token), within=120)
    assert result.close_code == 1000
    text = asr_text(result.finished)
    # engine_stub would answer with its byte count and digest.
    assert "sha256" not in text
    strip = str.maketrans("", "", "、。 ")
    assert jiwer.cer(expected["text"].translate(strip), text.translate(strip)) <= 0.2, text


@pytest.mark.timeout(150)
async def test_english_goes_through_the_whisper_engine(
    endpoint: tuple[str, str], tmp_path: Path
) -> None:
    """English speech (flite) is recognised by the Whisper engine with a low word error rate."""
    url, token = endpoint
    sentence = "the meeting has been moved to three thirty on thursday afternoon"
    audio = speak(sentence, "slt", tmp_path)
    result = await stream_session(url, audio, mimi_headers("asr", "en", token=token), within=120)
    assert result.close_code == 1000
    words = " ".join(w["result"] for w in result.finished["response"])
    heard = re.sub(r"[^a-z' ]", " ", words.lower().replace("3:30", "three thirty"))
    assert jiwer.wer(sentence, " ".join(heard.split())) <= 0.25, words
