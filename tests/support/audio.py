"""Audio of the tests: the real sample and what production answered for it, and
deterministic PCM whose every byte engine_stub's answer proves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.common.audio import BYTES_PER_SAMPLE, PCM_BYTES_PER_SECOND, SAMPLE_RATE

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SAMPLE = FIXTURES / "ja-chotto-osoi-chushoku.raw"
EXPECTED = FIXTURES / "ja-chotto-osoi-chushoku.expected.json"
# 16 kHz mono s16le, as the endpoint sends it and engine_stub expects it.
PCM16K = f"audio/x-pcm;bit=16;rate={SAMPLE_RATE};channels=1"
SECOND = PCM_BYTES_PER_SECOND  # bytes of one second of PCM16K
FRAME = SECOND // 10  # 100 ms, the frame the router and the engines see most


def sample_audio() -> bytes:
    """The Japanese sample engine_stub's transcript table knows."""
    return SAMPLE.read_bytes()


def expected() -> dict[str, Any]:
    """What the production service answered for the sample."""
    result: dict[str, Any] = json.loads(EXPECTED.read_text(encoding="utf-8"))
    return result


def pattern(seconds: float, rate: int = SAMPLE_RATE) -> bytes:
    """Deterministic s16le audio of `seconds` (engine_stub echoes its length and hash)."""
    n = int(seconds * rate) * BYTES_PER_SAMPLE
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def frames(audio: bytes, size: int) -> list[bytes]:
    """`audio` cut into frames of `size` bytes (the last may be shorter)."""
    return [audio[i : i + size] for i in range(0, len(audio), size)]
