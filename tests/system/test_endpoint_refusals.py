"""Every refusal before the upgrade: HTTP status, JSON body and headers, as a client sees them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.client import mimi_headers, refusal
from tests.support.http import get_json, get_json_blocking
from tests.support.processes import Service
from tests.support.stack import Stack
from tests.support.timing import eventually, poll_until


@dataclass(frozen=True)
class Endpoints:
    open: str  # origins restricted, one session per process, 4 KiB POST bodies; ja and zz
    # (zz's only backend is down)


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    with Stack(tmp_path_factory.mktemp("stack")) as stack:
        ja = stack.intermediate("intermediate-ja", [stack.engine_stub("engine-ja")])
        dead = stack.intermediate("intermediate-zz", [stack.engine_stub("engine-zz")])
        dead.stop()
        router = stack.router({"ja": [ja], "zz": [dead]}, wait_healthy=False)
        port = router.ports["http"]
        poll_until(
            lambda: _healthy(get_json_blocking(f"http://127.0.0.1:{port}/readiness")[1]) == 1,
            within=30,
            what="the router did not see the ja backend",
        )
        open_ = stack.endpoint(
            router,
            allowed_origins="https://good.example,https://also.example",
            max_sessions_per_process=1,
            max_post_bytes=4096,
        )
        yield Endpoints(_ws(open_))


def _healthy(body: dict[str, Any]) -> int:
    return len(
        {b["address"] for r in body.get("routes", []) for b in r["backends"] if b["healthy"]}
    )


def _ws(service: Service) -> str:
    return f"ws://127.0.0.1:{service.ports['http']}/"


def assert_error(body: dict[str, Any], code: str, retryable: bool = False) -> str:
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["retryable"] is retryable
    message: str = body["error"]["message"]
    assert message
    return message


async def test_missing_process_is_400(endpoints: Endpoints) -> None:
    """No x-mimi-process and no ?process=: 400 missing_process naming the supported ones."""
    headers = mimi_headers()
    del headers["x-mimi-process"]
    status, body, _ = await refusal(endpoints.open, headers)
    assert status == 400
    assert "nict-asr" in assert_error(body, "missing_process")


@pytest.mark.parametrize(
    ("asked", "code", "listed"),
    [
        ({"process": "ASR"}, "unsupported_process", ("asr", "nict-asr")),
        ({"language": "fr"}, "unsupported_language", ("ja", "zz")),
    ],
    ids=["process", "language"],
)
async def test_unrouted_process_or_language_is_400_listing_what_is_routed(
    endpoints: Endpoints, asked: dict[str, str], code: str, listed: tuple[str, ...]
) -> None:
    """A process or language the route table does not name: 400 unsupported_process /
    unsupported_language, whose message lists the processes / languages it does."""
    status, body, _ = await refusal(endpoints.open, mimi_headers(**asked))
    assert status == 400
    message = assert_error(body, code)
    for name in listed:
        assert name in message


async def test_bad_content_type_is_400(endpoints: Endpoints) -> None:
    """audio/wav is refused with 400 unsupported_content_type."""
    status, body, _ = await refusal(endpoints.open, mimi_headers(content_type="audio/wav"))
    assert status == 400
    assert "audio/x-pcm" in assert_error(body, "unsupported_content_type")


async def test_rate_out_of_range_is_400(endpoints: Endpoints) -> None:
    """rate=96000 is refused with 400 naming the supported range."""
    status, body, _ = await refusal(
        endpoints.open, mimi_headers(content_type="audio/x-pcm;bit=16;rate=96000;channels=1")
    )
    assert status == 400
    assert "8000" in assert_error(body, "unsupported_content_type")


async def test_bad_options_are_400_naming_the_option(endpoints: Endpoints) -> None:
    """progressive=maybe is refused with 400 invalid_options naming it."""
    status, body, _ = await refusal(endpoints.open, mimi_headers(options="progressive=maybe"))
    assert status == 400
    assert "progressive" in assert_error(body, "invalid_options")


async def test_origin_not_allowed_is_403(endpoints: Endpoints) -> None:
    """A browser Origin outside the allow-list is refused with 403 origin_not_allowed."""
    headers = {**mimi_headers(), "Origin": "https://evil.example"}
    status, body, _ = await refusal(endpoints.open, headers)
    assert status == 403
    assert_error(body, "origin_not_allowed")


async def test_allowed_origin_is_accepted(endpoints: Endpoints) -> None:
    """An Origin on the allow-list is upgraded."""
    headers = {**mimi_headers(), "Origin": "https://also.example"}
    async with connect(endpoints.open, additional_headers=headers, open_timeout=10) as ws:
        assert ws.response is not None
        assert ws.response.status_code == 101
    # The session counts against the cap of one until the endpoint has seen the close:
    # the next test must not meet it (on a loaded machine it did, as too_many_sessions).
    readiness = endpoints.open.replace("ws://", "http://") + "readiness"

    async def ended() -> bool:
        return not (await get_json(readiness))[1]["active_sessions"]

    await eventually(ended, within=10, what="the session did not end")


async def test_no_healthy_backend_is_503_with_retry_after(endpoints: Endpoints) -> None:
    """A route whose only backend is down: 503 backend_unavailable, retryable, Retry-After."""
    status, body, headers = await refusal(endpoints.open, mimi_headers(language="zz"))
    assert status == 503
    assert_error(body, "backend_unavailable", retryable=True)
    assert int(headers["retry-after"]) > 0


async def test_session_cap_per_process_is_503(endpoints: Endpoints) -> None:
    """With one nict-asr session open (the cap), a second gets 503 too_many_sessions."""
    async with connect(endpoints.open, additional_headers=mimi_headers(), open_timeout=10):
        status, body, headers = await refusal(endpoints.open, mimi_headers())
        assert status == 503
        assert_error(body, "too_many_sessions", retryable=True)
        assert "retry-after" in headers
        other = mimi_headers(process="asr")
        async with connect(endpoints.open, additional_headers=other, open_timeout=10):
            pass  # another process has its own cap


async def test_post_body_over_the_limit_is_413(endpoints: Endpoints) -> None:
    """POST / with a body over ENDPOINT_MAX_POST_BYTES is refused with 413 body_too_large."""
    url = endpoints.open.replace("ws://", "http://")
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(url, headers=mimi_headers(), content=b"\0" * 8192)
    assert response.status_code == 413
    assert_error(response.json(), "body_too_large")


async def test_post_refusals_are_the_same_json(endpoints: Endpoints) -> None:
    """POST / refuses a bad parameter with the same 400 JSON as the WebSocket handshake."""
    url = endpoints.open.replace("ws://", "http://")
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            url, headers=mimi_headers(content_type="audio/x-mp3"), content=b"\0" * 100
        )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert_error(response.json(), "unsupported_content_type")


def test_plain_get_without_upgrade_is_an_http_error(endpoints: Endpoints) -> None:
    """A plain GET / without upgrade headers gets an HTTP 4xx at once, not a hang."""
    url = endpoints.open.replace("ws://", "http://")
    response = httpx.get(url, headers={"x-mimi-process": "asr"}, timeout=10)
    assert 400 <= response.status_code < 500
