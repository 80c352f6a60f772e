"""The transcript table: known audio (by SHA-256) → real sentences with word timings.

A transcript file (JSON, one per sample; see docs/engine_stub.md) names the audio by its
length and SHA-256 and lists the determined segments with their words. Offsets are byte
offsets into the connection's audio (s16le mono at `sample_rate`).

Audio is recognised incrementally: each transcript has *checkpoints*, the SHA-256 of the
audio prefix up to a byte offset (at least every word start and end, and the end of the
audio). `Matcher` hashes the stream as it arrives and compares at every checkpoint it
crosses, whatever the frame sizes; a transcript stays a candidate while every checkpoint
passed so far matched, and is *confirmed* once at least one has.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.common.audio import BYTES_PER_SAMPLE

SHA256_HEX = r"^[0-9a-f]{64}$"


class TranscriptError(ValueError):
    """A transcript file is unreadable or inconsistent."""


class Word(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    word: str
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    end_byte: int = Field(gt=0)
    pronunciation: str | None = None


class Segment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    end_byte: int = Field(gt=0)
    words: tuple[Word, ...]


class Checkpoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    offset: int = Field(gt=0)
    sha256: str = Field(pattern=SHA256_HEX)


class Transcript(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    source: str = ""
    sample_rate: int = Field(gt=0)
    audio_bytes: int = Field(gt=0)
    sha256: str = Field(pattern=SHA256_HEX)
    separator: str = " "
    segments: tuple[Segment, ...] = Field(min_length=1)
    checkpoints: tuple[Checkpoint, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Transcript:
        offsets = [c.offset for c in self.checkpoints]
        if offsets != sorted(set(offsets)):
            raise ValueError("checkpoint offsets must be strictly increasing")
        last = self.checkpoints[-1]
        if (last.offset, last.sha256) != (self.audio_bytes, self.sha256):
            raise ValueError("the last checkpoint must be the whole audio (audio_bytes, sha256)")
        if self.segments[-1].end_byte != self.audio_bytes:
            raise ValueError("the last segment must end at audio_bytes")
        ends = [s.end_byte for s in self.segments]
        if ends != sorted(set(ends)):
            raise ValueError("segment end_byte must be strictly increasing")
        known = set(offsets)
        needed = set(ends) | {w.end_byte for s in self.segments for w in s.words}
        if not needed <= known:
            raise ValueError(f"no checkpoint at offsets {sorted(needed - known)}")
        return self


def byte_offset(ms: float, sample_rate: int) -> int:
    """Byte offset of a time in s16le mono audio: whole samples, 2 bytes each."""
    return round(ms * sample_rate / 1000) * BYTES_PER_SAMPLE


def parse_transcript(text: str | bytes, origin: str) -> Transcript:
    try:
        return Transcript.model_validate_json(text)
    except ValidationError as exc:
        raise TranscriptError(f"{origin}: {exc}") from None


def load_table(directory: Path | None = None) -> tuple[Transcript, ...]:
    """The shipped transcripts plus every `*.json` in `directory`, sorted by name."""
    found: list[Transcript] = []
    shipped = resources.files("engine_stub") / "transcripts"
    for entry in shipped.iterdir():
        if entry.name.endswith(".json"):
            found.append(parse_transcript(entry.read_bytes(), f"engine_stub/{entry.name}"))
    if directory is not None:
        if not directory.is_dir():
            raise TranscriptError(f"{directory}: not a directory")
        for path in sorted(directory.glob("*.json")):
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise TranscriptError(f"{path}: {exc}") from None
            found.append(parse_transcript(data, str(path)))
    return tuple(sorted(found, key=lambda t: t.name))


class Matcher:
    """Follows one audio stream against the transcripts of one sample rate."""

    def __init__(self, table: Iterable[Transcript]) -> None:
        self._hasher = hashlib.sha256()
        self.received = 0
        self._table = list(table)
        # per transcript: how many of its checkpoints matched, or None once one did not
        self._passed: list[int | None] = [0] * len(self._table)

    @property
    def current(self) -> Transcript | None:
        """The first transcript still alive that at least one checkpoint confirmed."""
        for transcript, passed in zip(self._table, self._passed, strict=True):
            if passed:
                return transcript
        return None

    def complete(self, transcript: Transcript) -> bool:
        """Whether the stream so far is exactly this transcript's whole audio."""
        for candidate, passed in zip(self._table, self._passed, strict=True):
            if candidate is transcript:
                return passed == len(transcript.checkpoints) and (
                    self.received == transcript.audio_bytes
                )
        return False

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        end = self.received + len(data)
        while (offset := self._next_offset(end)) is not None:
            take = offset - self.received
            self._hasher.update(view[:take])
            view = view[take:]
            self.received = offset
            self._compare(offset, self._hasher.copy().hexdigest())
        self._hasher.update(view)
        self.received = end
        for i, transcript in enumerate(self._table):
            if end > transcript.audio_bytes:
                self._passed[i] = None

    def _next_offset(self, end: int) -> int | None:
        """The nearest checkpoint of a live transcript not yet compared, if within `end`."""
        nearest: int | None = None
        for transcript, passed in zip(self._table, self._passed, strict=True):
            if passed is None or passed >= len(transcript.checkpoints):
                continue
            offset = transcript.checkpoints[passed].offset
            if offset <= end and (nearest is None or offset < nearest):
                nearest = offset
        return nearest

    def _compare(self, offset: int, digest: str) -> None:
        for i, transcript in enumerate(self._table):
            passed = self._passed[i]
            if passed is None or passed >= len(transcript.checkpoints):
                continue
            checkpoint = transcript.checkpoints[passed]
            if checkpoint.offset == offset:
                self._passed[i] = passed + 1 if checkpoint.sha256 == digest else None


def for_sample_rate(table: Sequence[Transcript], sample_rate: float) -> list[Transcript]:
    return [t for t in table if t.sample_rate == sample_rate]
