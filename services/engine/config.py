"""Engine settings, from `ENGINE_*` environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.audio import SAMPLE_RATE
from services.common.settings import ServiceSettings
from services.engine.models import WHISPER_BASE


def _cores() -> int:
    return os.cpu_count() or 1


class Settings(ServiceSettings):
    """Typed settings of the engine (docs/engines.md has the table)."""

    model_config = SettingsConfigDict(env_prefix="ENGINE_", extra="ignore", frozen=True)

    # whisper: ja and en (and Whisper's other languages); pocketsphinx: en only.
    recognizer: Literal["whisper", "pocketsphinx"] = "whisper"
    host: str = "127.0.0.1"
    port: int = Field(2700, ge=0, le=65535)
    # Sessions at once; more are refused at the handshake with HTTP 503.
    capacity: int = Field(4, ge=1, le=256)
    # pocketsphinx: decoding processes (it holds the GIL, so threads would share one core);
    # whisper: decodes running at once (threads: CTranslate2 releases the GIL).
    workers: int = Field(default_factory=_cores, ge=1, le=64)
    # The rate the model expects; clients asking another rate are resampled to it.
    sample_rate: int = Field(SAMPLE_RATE, ge=8000, le=48000)
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
    # -- whisper --
    # Whisper's language is fixed per process (no detection): one engine per language.
    language: Literal["ja", "en"] = "en"
    # The CTranslate2 model directory (`python -m services.engine.models install` makes it).
    whisper_model_dir: Path = WHISPER_BASE.directory
    compute_type: Literal["int8", "int8_float32", "float32"] = "int8"
    # CPU threads of one decode (ENGINE_WORKERS decodes run at once).
    threads: int = Field(1, ge=1, le=64)
    # Decodes of the same kind run as one CTranslate2 batch, at most this many.
    max_batch: int = Field(4, ge=1, le=64)
    # Beam width of final decodes (partials are always greedy).
    beam_size: int = Field(1, ge=1, le=10)
    # Encoder window: the utterance plus this many seconds (30: Whisper's full padded window).
    window_margin: float = Field(1.0, ge=0.0, le=30.0)
    # Seconds of new audio between two temporary hypotheses of an open utterance.
    partial_interval: float = Field(1.0, ge=0.1, le=30.0)
    # Silero VAD: speech probability threshold, the silence that ends an utterance (s), and
    # the longest utterance (s) before it is cut (each decode stays inside Whisper's 30 s).
    vad_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    min_silence: float = Field(0.5, ge=0.1, le=5.0)
    max_utterance: float = Field(20.0, ge=2.0, le=28.0)
    # -- pocketsphinx --
    # Optional model files; unset means the en-US model shipped in the pocketsphinx wheel.
    hmm: Path | None = None
    lm: Path | None = None
    dictionary: Path | None = None

    @model_validator(mode="after")
    def _pocketsphinx_is_english(self) -> Settings:
        if self.recognizer == "pocketsphinx" and self.language != "en":
            raise ValueError("ENGINE_LANGUAGE: pocketsphinx recognises en only")
        return self

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
