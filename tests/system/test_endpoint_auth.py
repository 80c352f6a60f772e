"""Authentication end to end: token file and JWT (RS256), scopes, expiry, and clean logs."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.client import connect

from tests.support.client import mimi_headers, refusal, stream_session
from tests.support.http import readiness
from tests.support.processes import Service
from tests.support.stack import Stack
from tests.support.timing import eventually

ALL = "tok-all-" + os.urandom(8).hex()
ASR_ONLY = "tok-asr-" + os.urandom(8).hex()
WRONG = "tok-wrong-" + os.urandom(8).hex()


@dataclass(frozen=True)
class Auth:
    tokens: Service
    jwt: Service
    key: rsa.RSAPrivateKey

    def ws(self, service: Service) -> str:
        return f"ws://127.0.0.1:{service.ports['http']}/"

    def jwt_token(self, **claims: Any) -> str:
        body = {"sub": "client", "exp": int(time.time()) + 300, **claims}
        return jwt.encode(body, self.key, algorithm="RS256")


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Auth]:
    tmp = tmp_path_factory.mktemp("auth")
    token_file = tmp / "tokens"
    digest = hashlib.sha256
    token_file.write_text(
        f"{digest(ALL.encode()).hexdigest()}\n{digest(ASR_ONLY.encode()).hexdigest()} asr\n"
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp / "public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with Stack(tmp) as stack:
        ja = stack.intermediate("im-ja", [stack.engine_stub("engine-ja")])
        router = stack.router({"ja": [ja]})
        # One session at a time per token (tests here run one session at a time otherwise).
        tokens = stack.endpoint(
            router, auth="tokens", token_file=token_file, max_sessions_per_token=1
        )
        jwt_ = stack.endpoint(
            router,
            auth="jwt",
            jwt_key_file=public,
            jwt_algorithm="RS256",
            max_sessions_per_token=1,
        )
        yield Auth(tokens, jwt_, key)


def assert_401(status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert body["error"]["retryable"] is False
    assert headers["www-authenticate"].startswith("Bearer")


async def test_no_token_is_401(auth: Auth) -> None:
    """Without a token: 401 unauthorized with WWW-Authenticate: Bearer."""
    assert_401(*await refusal(auth.ws(auth.tokens), mimi_headers()))


async def test_unknown_token_is_401(auth: Auth) -> None:
    """A token not in the file: 401."""
    assert_401(*await refusal(auth.ws(auth.tokens), mimi_headers(token=WRONG)))


async def test_empty_query_token_counts_as_absent(auth: Auth) -> None:
    """?access-token= (empty, as the browser client sends it) is no token: 401."""
    url = auth.ws(auth.tokens) + "?" + urlencode({"access-token": ""})
    assert_401(*await refusal(url, mimi_headers()))


async def test_token_in_header_streams(auth: Auth) -> None:
    """A listed token as Authorization: Bearer streams a session to recog-finished."""
    result = await stream_session(auth.ws(auth.tokens), b"\0" * 6400, mimi_headers(token=ALL))
    assert result.close_code == 1000
    assert result.finished


async def test_token_in_query_streams(auth: Auth) -> None:
    """A listed token as ?access-token= streams a session (browsers cannot set headers)."""
    url = auth.ws(auth.tokens) + "?" + urlencode({"access-token": ALL})
    result = await stream_session(url, b"\0" * 6400, mimi_headers())
    assert result.close_code == 1000


async def test_token_without_the_scope_is_403(auth: Auth) -> None:
    """A token scoped to asr is refused 403 forbidden for nict-asr."""
    status, body, _ = await refusal(auth.ws(auth.tokens), mimi_headers(token=ASR_ONLY))
    assert status == 403
    assert body["error"]["code"] == "forbidden"
    result = await stream_session(
        auth.ws(auth.tokens), b"\0" * 6400, mimi_headers("asr", token=ASR_ONLY)
    )
    assert result.close_code == 1000


async def test_post_needs_a_token_too(auth: Auth) -> None:
    """POST / without a token is 401 with the same JSON."""
    url = f"http://127.0.0.1:{auth.tokens.ports['http']}/"
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(url, headers=mimi_headers(), content=b"\0" * 3200)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_rs256_jwt_with_scope_streams(auth: Auth) -> None:
    """An RS256 JWT with scope nict-asr streams a session."""
    token = auth.jwt_token(scope="nict-asr")
    result = await stream_session(auth.ws(auth.jwt), b"\0" * 6400, mimi_headers(token=token))
    assert result.close_code == 1000


async def test_expired_jwt_is_401(auth: Auth) -> None:
    """An expired JWT is 401 whose message says it expired."""
    token = auth.jwt_token(scope="nict-asr", exp=int(time.time()) - 5)
    status, body, headers = await refusal(auth.ws(auth.jwt), mimi_headers(token=token))
    assert_401(status, body, headers)
    assert "expired" in body["error"]["message"]


async def test_jwt_without_the_scope_is_403(auth: Auth) -> None:
    """A JWT scoped to asr only is 403 for nict-asr."""
    token = auth.jwt_token(scope="asr")
    status, _, _ = await refusal(auth.ws(auth.jwt), mimi_headers(token=token))
    assert status == 403


async def test_jwt_signed_by_another_key_is_401(auth: Auth) -> None:
    """A JWT signed by a key other than the configured one is 401."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"scope": "nict-asr", "exp": int(time.time()) + 60}, other, "RS256")
    assert_401(*await refusal(auth.ws(auth.jwt), mimi_headers(token=token)))


async def test_tokens_never_reach_the_logs(auth: Auth) -> None:
    """No token, accepted or refused, header or query, appears in the endpoints' logs."""
    jwt_token = auth.jwt_token(scope="nict-asr")
    query = "?" + urlencode({"access-token": WRONG})
    await refusal(auth.ws(auth.tokens) + query, mimi_headers())
    url = auth.ws(auth.jwt) + "?" + urlencode({"access-token": jwt_token})
    assert (await stream_session(url, b"\0" * 3200, mimi_headers())).close_code == 1000
    # The summary line is written just after the close the client saw.
    await eventually(
        lambda: "session summary" in auth.jwt.log_text(), within=10, what="no summary line"
    )
    logs = auth.tokens.log_text() + auth.jwt.log_text()
    assert "access-token" in logs or "WebSocket /" in logs  # the requests were logged
    for secret in (ALL, ASR_ONLY, WRONG, jwt_token, jwt_token.split(".")[2]):
        assert secret not in logs


def assert_429(status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    assert status == 429
    assert body["error"]["code"] == "too_many_sessions_per_token"
    assert body["error"]["retryable"] is True
    assert int(headers["retry-after"]) >= 1


async def test_one_token_cannot_hold_more_than_its_sessions(auth: Auth) -> None:
    """A token at its concurrency limit is refused with 429 and Retry-After before the
    upgrade; another token is not affected."""
    url = auth.ws(auth.tokens)
    async with connect(url, additional_headers=mimi_headers(token=ALL), open_timeout=10):
        assert_429(*await refusal(url, mimi_headers(token=ALL)))
        other = mimi_headers(process="asr", token=ASR_ONLY)
        async with connect(url, additional_headers=other, open_timeout=10):
            pass

    # The slot is free again once the session ended (the close is seen just after).
    async def no_session_counts() -> bool:
        return (await readiness(auth.tokens))[1]["active_sessions"] == {}

    await eventually(no_session_counts, within=10, what="the session still counts")
    async with connect(url, additional_headers=mimi_headers(token=ALL), open_timeout=10):
        pass


async def test_jwts_of_one_subject_share_its_limit(auth: Auth) -> None:
    """Two different JWTs of the same subject (sub) count as one client."""
    url = auth.ws(auth.jwt)
    first = mimi_headers(token=auth.jwt_token(scope="nict-asr"))
    async with connect(url, additional_headers=first, open_timeout=10):
        again = mimi_headers(token=auth.jwt_token(scope="asr nict-asr", jti="second"))
        assert_429(*await refusal(url, again))
        other = mimi_headers(token=auth.jwt_token(scope="nict-asr", sub="another-client"))
        async with connect(url, additional_headers=other, open_timeout=10):
            pass
