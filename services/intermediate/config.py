"""Settings of the intermediate, from INTERMEDIATE_* environment variables."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTERMEDIATE_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    grpc_port: int = Field(50052, ge=0, le=65535)
    http_port: int = Field(8082, ge=0, le=65535)
    # Shown in `accepted.backend` and logs; the pod name in Kubernetes.
    name: str = "intermediate"
    # Engine WebSocket URLs, comma-separated: a sidecar on localhost, or several engines.
    engines: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["ws://127.0.0.1:2700"])
    # Sessions at once per engine; pre-opened connections count against it.
    engine_capacity: int = Field(4, ge=1)
    idle_connections: int = Field(1, ge=0)
    # The rate the engine is configured for; audio is resampled to it.
    engine_sample_rate: int = Field(16000, ge=8000, le=48000)
    checkout_timeout: float = Field(5.0, gt=0)
    connect_timeout: float = Field(3.0, gt=0)
    ping_interval: float = Field(2.0, gt=0)
    ping_timeout: float = Field(3.0, gt=0)
    # An engine that owes a reply for longer than this has stopped answering.
    reply_timeout: float = Field(5.0, gt=0)
    backoff_initial: float = Field(0.2, gt=0)
    backoff_max: float = Field(5.0, gt=0)
    drain_seconds: float = Field(30.0, ge=0)

    @field_validator("engines", mode="before")
    @classmethod
    def _split_engines(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for url in value:
                if not str(url).startswith(("ws://", "wss://")):
                    raise ValueError(f"engine URL must start with ws:// or wss://: {url!r}")
            if not value:
                raise ValueError("at least one engine URL is needed")
        return value
