"""engine_stub settings: ENGINE_STUB_* environment variables (docs/engine_stub.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.audio import SAMPLE_RATE
from services.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ENGINE_STUB_", env_ignore_empty=True)

    host: str = "127.0.0.1"
    port: int = Field(2700, ge=0, le=65535)
    # What a session assumes until a config says otherwise (vosk-server's SAMPLE_RATE).
    sample_rate: int = Field(SAMPLE_RATE, gt=0)
    # 0: one determined segment, at eof; > 0: a byte-mode segment every that many ms of audio.
    segment_ms: int = Field(0, ge=0)
    # A directory of more transcript files (*.json), added to the shipped ones.
    transcripts: Path | None = None
    ping_interval: float = Field(20.0, ge=0)  # 0: never ping clients
    ping_timeout: float = Field(20.0, gt=0)

    # Misbehaviour on purpose.
    startup_delay: float = Field(0.0, ge=0)
    frame_latency_ms: float = Field(0.0, ge=0)
    capacity: int = Field(0, ge=0)  # 0: unlimited
    refuse: bool = False
    close_after_frames: int | None = Field(None, ge=0)
    close_mode: Literal["1011", "abort"] = "1011"
    hang_after_frames: int | None = Field(None, ge=0)
    garbage_after_frames: int | None = Field(None, ge=0)
    ignore_pings: bool = False
