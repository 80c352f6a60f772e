"""Settings of the endpoint, from ENDPOINT_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.common.settings import ServiceSettings


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _require_content(path: Path, variable: str) -> None:
    """A key file that is missing or blank stops start-up (not a 500 on every request)."""
    try:
        content = path.read_text()
    except OSError as exc:
        raise ValueError(f"{variable}={path} cannot be read: {exc.strerror}") from None
    if not content.strip():
        raise ValueError(f"{variable}={path} is empty")


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ENDPOINT_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # The router's gRPC address; `dns:///router:50051` balances per stream over a headless
    # Service in Kubernetes.
    router_address: str = "127.0.0.1:50051"

    # Authentication: off (local development only), tokens (a file of SHA-256 hex
    # digests, one per line) or jwt (HS256 secret or RS256 public key, per-process scopes).
    auth: Literal["off", "tokens", "jwt"] = "off"
    token_file: Path | None = None
    jwt_key_file: Path | None = None
    # One algorithm, never a list: accepting both would let an RS256 public key be used
    # as an HS256 secret.
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    jwt_audience: str | None = None
    jwt_issuer: str | None = None

    # Browsers' Origin header must be one of these; "*" allows any.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])

    max_sessions_per_process: int = Field(1000, ge=1)
    # Sessions one token (one JWT subject) may hold at once on this process; with auth on.
    max_sessions_per_token: int = Field(100, ge=1)
    max_frame_bytes: int = Field(65536, ge=1024)
    idle_timeout: float = Field(30.0, gt=0)
    max_session_seconds: float = Field(900.0, gt=0)
    max_post_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # How long the backend may take to accept a session before the client gets 503.
    accept_timeout: float = Field(15.0, gt=0)
    # How long after recog-break the final result may take.
    final_timeout: float = Field(30.0, gt=0)
    drain_seconds: float = Field(30.0, ge=0)
    # Seconds a refused client is told to wait (Retry-After).
    retry_after_seconds: int = Field(5, ge=1)
    # The browser page at /demo/ (docs/demo.md); off: 404.
    demo: bool = True

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        return _split(value)

    @model_validator(mode="after")
    def _auth_needs_keys(self) -> Settings:
        if self.auth == "tokens" and self.token_file is None:
            raise ValueError("ENDPOINT_AUTH=tokens needs ENDPOINT_TOKEN_FILE")
        if self.auth == "jwt" and self.jwt_key_file is None:
            raise ValueError("ENDPOINT_AUTH=jwt needs ENDPOINT_JWT_KEY_FILE")
        if self.auth == "jwt" and self.jwt_key_file is not None:
            _require_content(self.jwt_key_file, "ENDPOINT_JWT_KEY_FILE")
        return self
