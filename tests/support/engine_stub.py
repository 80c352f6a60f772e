"""What engine_stub should answer for the fixture sample."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from services.common.audio import BYTES_PER_SAMPLE, SAMPLE_RATE
from tests.support.audio import expected


@dataclass(frozen=True)
class ExpectedSegment:
    text: str
    words: list[dict[str, Any]]  # as the engine protocol sends them
    end_byte: int  # where the segment's audio ends (its last word's end)


def expected_segments() -> list[ExpectedSegment]:
    """The determined segments of expected.json, with their words from its `words` list."""
    data = expected()
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
        end_byte = math.floor(taken[-1]["end"] * SAMPLE_RATE + 0.5) * BYTES_PER_SAMPLE
        segments.append(ExpectedSegment(segment["result"], taken, end_byte))
    return segments
