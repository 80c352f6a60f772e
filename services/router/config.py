"""Settings of the router, from ROUTER_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTER_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    grpc_port: int = Field(50051, ge=0, le=65535)
    http_port: int = Field(8081, ge=0, le=65535)
    # The YAML route table (a ConfigMap in Kubernetes); re-read when it changes.
    routes_file: Path = Path("config/routes.local.yaml")
    reload_interval: float = Field(2.0, gt=0)
    # DNS names (dns:///name:port) are re-resolved this often.
    resolve_interval: float = Field(10.0, gt=0)
    # How long a backend may take to accept a session (its pool checkout included).
    accept_timeout: float = Field(10.0, gt=0)
    # Backends tried before a session is refused as unavailable.
    start_attempts: int = Field(3, ge=1)
    # Audio kept per session for replay on failover, in seconds; beyond it, no failover.
    failover_buffer_seconds: float = Field(60.0, ge=0)
    max_failovers: int = Field(2, ge=0)
    # The deadline of every backend call: longer than the longest session the endpoint allows.
    session_deadline: float = Field(1200.0, gt=0)
    drain_seconds: float = Field(30.0, ge=0)
    # Every connection to the router is ended (GOAWAY) after this long, sessions on it
    # finishing first: the endpoints' channels then re-resolve and find routers added since.
    max_connection_age: float = Field(60.0, gt=0)
    # Shadow traffic: audio waiting for a shadow beyond this drops the shadow (not the client).
    shadow_queue_seconds: float = Field(10.0, gt=0)
    # How long a shadow may take to finish after its primary did before it counts as failed.
    shadow_finish_timeout: float = Field(30.0, gt=0)
    # Shadow sessions at once (they can outlive their primaries); beyond it, no new shadow.
    shadow_max_sessions: int = Field(100, ge=0)
