"""Token checks without sockets: token file of SHA-256 digests, JWT HS256 and RS256."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.endpoint.auth import Authenticator, token_digest
from services.endpoint.config import Settings
from services.endpoint.errors import Refusal
from services.endpoint.logfilters import RedactTokens

SECRET = "a-long-enough-shared-secret-for-hs256-tests"


def refusal_of(auth: Authenticator, token: str, process: str) -> Refusal | None:
    try:
        auth.check(token, process)
    except Refusal as refusal:
        return refusal
    return None


def status_of(auth: Authenticator, token: str, process: str = "asr") -> int:
    refusal = refusal_of(auth, token, process)
    if refusal is None:
        return 200
    if refusal.status == 401:
        assert refusal.headers["WWW-Authenticate"].startswith("Bearer")
    assert token not in refusal.message or not token
    return refusal.status


@pytest.fixture
def token_auth(tmp_path: Path) -> Authenticator:
    path = tmp_path / "tokens"
    path.write_text(f"# clients\n{token_digest('all-processes')}\n{token_digest('asr-only')} asr\n")
    return Authenticator(Settings(auth="tokens", token_file=path))


def test_token_file_accepts_a_listed_token(token_auth: Authenticator) -> None:
    """A token whose digest is in the file may use every process when no scope is listed."""
    assert status_of(token_auth, "all-processes", "nict-asr") == 200


def test_token_file_scope_limits_processes(token_auth: Authenticator) -> None:
    """A token listed with scope asr is refused 403 for nict-asr."""
    assert status_of(token_auth, "asr-only", "asr") == 200
    assert status_of(token_auth, "asr-only", "nict-asr") == 403


def test_token_file_unknown_or_missing_token_is_401(token_auth: Authenticator) -> None:
    """An unknown token and no token are both 401."""
    assert status_of(token_auth, "guess") == 401
    assert status_of(token_auth, "") == 401


def test_token_file_rejects_a_line_that_is_not_a_digest(tmp_path: Path) -> None:
    """A token file holding a plain token (not its digest) stops start-up."""
    path = tmp_path / "tokens"
    path.write_text("plain-token\n")
    with pytest.raises(ValueError, match="SHA-256"):
        Authenticator(Settings(auth="tokens", token_file=path))


def hs256(tmp_path: Path) -> Authenticator:
    path = tmp_path / "secret"
    path.write_text(SECRET)
    return Authenticator(Settings(auth="jwt", jwt_key_file=path, jwt_algorithm="HS256"))


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "client-1", "exp": int(time.time()) + 300, **extra}


def test_jwt_hs256_with_scope(tmp_path: Path) -> None:
    """An HS256 JWT with scope 'asr' may use asr and is 403 for nict-asr."""
    auth = hs256(tmp_path)
    token = jwt.encode(claims(scope="asr"), SECRET, algorithm="HS256")
    assert status_of(auth, token, "asr") == 200
    assert status_of(auth, token, "nict-asr") == 403


def test_jwt_scopes_list_claim(tmp_path: Path) -> None:
    """The scopes claim may also be a list."""
    token = jwt.encode(claims(scopes=["nict-asr"]), SECRET, algorithm="HS256")
    assert status_of(hs256(tmp_path), token, "nict-asr") == 200


def test_jwt_expired_or_without_exp_is_401(tmp_path: Path) -> None:
    """An expired JWT, or one without exp, is 401."""
    auth = hs256(tmp_path)
    expired = jwt.encode(claims(scope="asr", exp=int(time.time()) - 10), SECRET, "HS256")
    no_exp = jwt.encode({"scope": "asr"}, SECRET, algorithm="HS256")
    assert status_of(auth, expired) == 401
    assert status_of(auth, no_exp) == 401


def test_jwt_wrong_secret_is_401(tmp_path: Path) -> None:
    """A JWT signed with another secret is 401."""
    token = jwt.encode(claims(scope="asr"), "another-secret-of-enough-length-xx", "HS256")
    assert status_of(hs256(tmp_path), token) == 401


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rs256(tmp_path: Path, key: rsa.RSAPrivateKey) -> Authenticator:
    path = tmp_path / "public.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Authenticator(Settings(auth="jwt", jwt_key_file=path, jwt_algorithm="RS256"))


def test_jwt_rs256_signed_by_the_private_key(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    """An RS256 JWT signed with the private key is accepted by the public key."""
    token = jwt.encode(claims(scope="asr nict-asr"), rsa_key, algorithm="RS256")
    assert status_of(rs256(tmp_path, rsa_key), token, "nict-asr") == 200


def test_jwt_rs256_refuses_hs256_with_the_public_key(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    """An HS256 token made with the public key as secret is refused (algorithm confusion)."""
    auth = rs256(tmp_path, rsa_key)
    public_pem = (tmp_path / "public.pem").read_bytes()

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = (
        b64(b'{"alg":"HS256","typ":"JWT"}')
        + b"."
        + b64(json.dumps({"scope": "asr", "exp": int(time.time()) + 300}).encode())
    )
    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    forged = (signing_input + b"." + b64(signature)).decode()
    assert status_of(auth, forged) == 401


def test_jwt_audience_is_checked_when_set(tmp_path: Path) -> None:
    """With an audience configured, a token for another audience is 401."""
    path = tmp_path / "secret"
    path.write_text(SECRET)
    auth = Authenticator(Settings(auth="jwt", jwt_key_file=path, jwt_audience="kikimimi"))
    good = jwt.encode(claims(scope="asr", aud="kikimimi"), SECRET, "HS256")
    other = jwt.encode(claims(scope="asr", aud="elsewhere"), SECRET, "HS256")
    assert status_of(auth, good) == 200
    assert status_of(auth, other) == 401


def test_query_tokens_are_redacted_in_log_lines() -> None:
    """uvicorn's request line with ?access-token=… is logged with the value redacted."""
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s" %d', None, None
    )
    record.args = ("127.0.0.1:1", "/?process=asr&access-token=s3cret&x=1", 401)
    RedactTokens().filter(record)
    assert "s3cret" not in record.getMessage()
    assert "access-token=[redacted]&x=1" in record.getMessage()


@pytest.mark.parametrize(
    "query",
    [
        "access%2Dtoken=s3cret&x=1",
        "access%2dtoken=s3cret&x=1",
        "%61ccess-token=s3cret&x=1",
        "x=1&access-token=s3cret",
        "ACCESS-TOKEN=s3cret&x=1",
    ],
)
def test_percent_encoded_token_names_are_redacted(query: str) -> None:
    """Every spelling of the name that Starlette decodes to access-token is redacted too."""
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s" %d', None, None
    )
    record.args = ("127.0.0.1:5000", f"/?process=asr&{query}", 403)
    RedactTokens().filter(record)
    assert "s3cret" not in record.getMessage()
    assert "process=asr" in record.getMessage()


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_an_empty_jwt_key_file_stops_start_up(tmp_path: Path, content: str) -> None:
    """An empty key file is a start-up error naming the variable, not a 500 per request."""
    path = tmp_path / "secret"
    path.write_text(content)
    with pytest.raises(ValueError, match="ENDPOINT_JWT_KEY_FILE"):
        Settings(auth="jwt", jwt_key_file=path)


def test_a_missing_key_file_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ENDPOINT_JWT_KEY_FILE"):
        Settings(auth="jwt", jwt_key_file=tmp_path / "absent")
