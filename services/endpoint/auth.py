"""Bearer-token authentication with per-process scopes.

- `tokens`: a file with one token per line as `<sha256 hex of the token> [scope,scope]`
  (no scopes: every process). Tokens are compared by digest in constant time; the file
  never holds a token itself.
- `jwt`: signed JWTs (HS256 with a shared secret, RS256 with a public key), checked for
  signature and expiry (and audience/issuer when configured); the `scope` claim (space-
  separated, OAuth style) or `scopes` (a list) names the processes the token may use.

A missing or bad token is 401 (with `WWW-Authenticate: Bearer`), a valid token without
the process's scope is 403. Tokens never reach a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path
from typing import Any

import jwt

from services.endpoint.config import Settings
from services.endpoint.errors import Refusal

log = logging.getLogger(__name__)

ANY_SCOPE = "*"


def _unauthorized(message: str, error: str = "invalid_token") -> Refusal:
    return Refusal(
        401, "unauthorized", message, headers={"WWW-Authenticate": f'Bearer error="{error}"'}
    )


def _forbidden(process: str) -> Refusal:
    return Refusal(403, "forbidden", f"the token has no scope for process {process!r}")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_token_file(path: Path) -> dict[str, frozenset[str]]:
    """digest → scopes, from lines `<sha256 hex> [scope,scope]`; '#' starts a comment."""
    entries: dict[str, frozenset[str]] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        digest, _, scopes = line.partition(" ")
        digest = digest.lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"{path}:{number}: not a SHA-256 hex digest")
        names = frozenset(s.strip() for s in scopes.split(",") if s.strip()) or {ANY_SCOPE}
        entries[digest] = frozenset(names)
    return entries


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.mode = settings.auth
        self.tokens: dict[str, frozenset[str]] = {}
        self.jwt_key = ""
        self.settings = settings
        if self.mode == "tokens" and settings.token_file is not None:
            self.tokens = load_token_file(settings.token_file)
        if self.mode == "jwt" and settings.jwt_key_file is not None:
            self.jwt_key = settings.jwt_key_file.read_text()

    def check(self, token: str, process: str) -> str:
        """The subject of `token` if it may use `process`; raise a 401 or 403 Refusal
        otherwise. The subject is whom per-token limits count: the JWT's `sub` (or the
        token's digest when it has none), the digest for the token file; "" with auth off."""
        if self.mode == "off":
            return ""
        if not token:
            raise _unauthorized(
                "an access token is required (Authorization: Bearer, or ?access-token=)",
                "invalid_request",
            )
        if self.mode == "tokens":
            scopes, subject = self._scopes_of_token(token), "token:" + token_digest(token)
        else:
            scopes, subject = self._scopes_of_jwt(token)
        if ANY_SCOPE not in scopes and process not in scopes:
            raise _forbidden(process)
        return subject

    def _scopes_of_token(self, token: str) -> frozenset[str]:
        digest = token_digest(token)
        found: frozenset[str] | None = None
        for known, scopes in self.tokens.items():
            # Compare against every entry, so the time taken does not tell which matched.
            if hmac.compare_digest(known, digest):
                found = scopes
        if found is None:
            raise _unauthorized("the access token is not valid")
        return found

    def _scopes_of_jwt(self, token: str) -> tuple[frozenset[str], str]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.jwt_key,
                algorithms=[self.settings.jwt_algorithm],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the access token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise _unauthorized(f"the access token is not valid: {exc}") from None
        scopes: set[str] = set()
        if isinstance(claims.get("scope"), str):
            scopes.update(claims["scope"].split())
        if isinstance(claims.get("scopes"), list):
            scopes.update(str(s) for s in claims["scopes"])
        sub = claims.get("sub")
        subject = f"sub:{sub}" if isinstance(sub, str) and sub else "jwt:" + token_digest(token)
        return frozenset(scopes), subject
