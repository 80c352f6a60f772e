"""Build a transcript entry from a sample and its expected.json (the fixtures' format).

    python -m engine_stub.build_transcript AUDIO.raw EXPECTED.json > entry.json

Segments follow `nict_v2_determined_segments` (their `result` is the segment text); the
words of each segment are taken, in order, from the `words` list (surface, pronunciation,
[start_ms, end_ms]) until their surfaces add up to the segment's words. A segment ends at
the end of its last word; the last segment ends with the audio. Checkpoints are the
SHA-256 of the audio prefix at every word start and end and at the end of the audio.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from engine_stub.transcripts import Checkpoint, Segment, Transcript, Word, byte_offset
from services.common.audio import SAMPLE_RATE


def _segment_words(
    segment: dict[str, Any], words: list[dict[str, Any]], start: int
) -> tuple[list[dict[str, Any]], int]:
    """The entries of `words` from `start` whose surfaces spell the segment's words."""
    target = "".join(segment["words"])
    taken: list[dict[str, Any]] = []
    spelled = ""
    index = start
    while spelled != target:
        if index >= len(words) or not target.startswith(spelled + words[index]["result"]):
            raise ValueError(f"words do not spell segment {segment['result']!r}")
        spelled += words[index]["result"]
        taken.append(words[index])
        index += 1
    return taken, index


def build(audio: bytes, expected: dict[str, Any], name: str, sample_rate: int) -> Transcript:
    words = expected["words"]
    raw_segments = expected["nict_v2_determined_segments"]
    segments: list[Segment] = []
    offsets = {len(audio)}
    index = 0
    for number, raw in enumerate(raw_segments):
        taken, index = _segment_words(raw, words, index)
        seg_words = []
        for word in taken:
            start_ms, end_ms = word["time"]
            start_byte = byte_offset(start_ms, sample_rate)
            end_byte = byte_offset(end_ms, sample_rate)
            if not 0 < end_byte <= len(audio):
                raise ValueError(f"word {word['result']!r} ends after the audio")
            offsets.update(o for o in (start_byte, end_byte) if o > 0)
            seg_words.append(
                Word(
                    word=word["result"],
                    pronunciation=word.get("pronunciation"),
                    start=start_ms / 1000,
                    end=end_ms / 1000,
                    end_byte=end_byte,
                )
            )
        last = number == len(raw_segments) - 1
        end = len(audio) if last else seg_words[-1].end_byte
        segments.append(Segment(text=raw["result"], end_byte=end, words=tuple(seg_words)))
    checkpoints = tuple(
        Checkpoint(offset=o, sha256=hashlib.sha256(audio[:o]).hexdigest()) for o in sorted(offsets)
    )
    return Transcript(
        name=name,
        source=expected.get("audio", ""),
        sample_rate=sample_rate,
        audio_bytes=len(audio),
        sha256=hashlib.sha256(audio).hexdigest(),
        separator="" if expected.get("language") in {"ja", "zh"} else " ",
        segments=tuple(segments),
        checkpoints=checkpoints,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine_stub.build_transcript")
    parser.add_argument("audio", type=Path, help="headerless s16le mono PCM")
    parser.add_argument("expected", type=Path, help="expected.json of the sample")
    parser.add_argument("--name", help="transcript name (default: the audio file's stem)")
    parser.add_argument("--sample-rate", type=int, default=SAMPLE_RATE)
    args = parser.parse_args(argv)
    transcript = build(
        args.audio.read_bytes(),
        json.loads(args.expected.read_text(encoding="utf-8")),
        args.name or args.audio.stem,
        args.sample_rate,
    )
    sys.stdout.write(transcript.model_dump_json(indent=1, exclude_none=True) + "\n")


if __name__ == "__main__":
    main()
