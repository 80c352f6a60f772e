"""Shared helpers for engine_stub tests: the fixture sample and what it should give."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SAMPLE = FIXTURES / "ja-chotto-osoi-chushoku.raw"
EXPECTED = FIXTURES / "ja-chotto-osoi-chushoku.expected.json"


@dataclass(frozen=True)
class ExpectedSegment:
    text: str
    words: list[dict[str, Any]]  # as the engine protocol sends them
    end_byte: int  # where the segment's audio ends (its last word's end)


def sample_audio() -> bytes:
    return SAMPLE.read_bytes()


def expected_segments() -> list[ExpectedSegment]:
    """The determined segments of expected.json, with their words from its `words` list."""
    data = json.loads(EXPECTED.read_text(encoding="utf-8"))
    words = iter(data["words"])
    segments = []
    for segment in data["nict_v2_determined_segments"]:
        target, spelled, taken = "".join(segment["words"]), "", []
        while spelled != target:
            word = next(words)
            spelled += word["result"]
            start_ms, end_ms = word["time"]
            taken.append(
                {
                    "conf": 1.0,
                    "end": end_ms / 1000,
                    "pronunciation": word["pronunciation"],
                    "start": start_ms / 1000,
                    "word": word["result"],
                }
            )
        end_byte = math.floor(taken[-1]["end"] * 16000 + 0.5) * 2
        segments.append(ExpectedSegment(segment["result"], taken, end_byte))
    return segments


def frames(audio: bytes, size: int) -> list[bytes]:
    return [audio[i : i + size] for i in range(0, len(audio), size)]
