"""Engine settings, from `ENGINE_*` environment variables."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


def _cores() -> int:
    return os.cpu_count() or 1


class Settings(ServiceSettings):
    """Typed settings of the engine; model paths default to the model inside the wheel."""

    model_config = SettingsConfigDict(env_prefix="ENGINE_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(2700, ge=0, le=65535)
    # Sessions at once; more are refused at the handshake with HTTP 503.
    capacity: int = Field(4, ge=1, le=256)
    # Decoding processes (pocketsphinx holds the GIL, so threads would share one core).
    workers: int = Field(default_factory=_cores, ge=1, le=64)
    # The rate the model expects; clients asking another rate are resampled to it.
    sample_rate: int = Field(16000, ge=8000, le=48000)
    ping_interval: float = Field(20.0, gt=0)
    ping_timeout: float = Field(20.0, gt=0)
    # Largest accepted WebSocket message, as vosk-server (1 MiB); larger closes with 1009.
    max_message_bytes: int = Field(1 << 20, ge=1024)
    # Seconds a worker may take for one frame before the session fails with 1011.
    decode_timeout: float = Field(30.0, gt=0)
    # pocketsphinx's second (flat-lexicon) pass: slower finals, no better on our tests.
    fwdflat: bool = False
    # Most HMMs the search keeps per 10 ms frame (pocketsphinx `maxhmmpf`, its default 30000):
    # 10000 decodes the test sentences as well with 22 % less CPU.
    maxhmmpf: int = Field(10000, ge=100)
    # Optional model files; unset means the en-US model shipped in the pocketsphinx wheel.
    hmm: Path | None = None
    lm: Path | None = None
    dictionary: Path | None = None

    @model_validator(mode="after")
    def _paths_exist(self) -> Settings:
        for name in ("hmm", "lm", "dictionary"):
            path = getattr(self, name)
            if path is not None and not path.exists():
                raise ValueError(f"ENGINE_{name.upper()}: {path} does not exist")
        return self

    def worker_processes(self) -> int:
        """Decoding processes to start: no more than sessions can keep busy."""
        return min(self.workers, self.capacity)

    def decoders_per_worker(self) -> int:
        """Decoders each worker preloads: sessions go to the least loaded worker, so no
        worker ever holds more than ceil(capacity / workers) sessions."""
        return -(-self.capacity // self.worker_processes())
