"""One engine session without I/O: fed the frames of a connection, returns the replies.

The rules (also in docs/engine_stub.md, so that a test can compute what to expect):

- A text frame that is a JSON object with an object under "config" is a config: no reply.
  Before the first audio frame it sets `sample_rate` (a positive number) and `words`
  (false: replies carry no "result"); later it is ignored, as vosk-server does.
- The text frame of exactly the bytes `{"eof" : 1}` is answered by the final segment and
  ends the session; `{"reset" : 1}` is answered by the final segment and keeps it going.
  Any other text is a `ProtocolViolation` (the server closes 1011).
- Each binary frame (even length, else `ProtocolViolation`) is answered by one reply:
  a determined segment when the audio received so far completes one, else a partial.

Text, when the audio matches no transcript ("byte mode"):
  partial  `bytes=<N>`, N = all audio bytes received on the connection so far;
  segment  `bytes=<n> sha256=<h>`, n = the segment's length in bytes, h = the first 16 hex
           digits of the SHA-256 of the segment's audio; one word (the whole text) with
           conf 1.0, start/end = byte offsets / (2 * sample_rate), rounded to 6 decimals.
  Segments: with segment_ms = 0 the only segment is the final one (all audio); with
  segment_ms > 0, a frame that crosses one or more multiples of
  S = floor(segment_ms * sample_rate / 1000) * 2 bytes is answered by a segment that covers
  the audio up to the last multiple crossed. The final segment covers the rest since the
  last segment; when the rest is empty the final reply is `{"text": ""}`.

With segment_ms = 0, audio at a transcript's sample rate is followed against the transcript
table (see transcripts.py). Once a transcript is confirmed, each of its segments but the last
is sent as the reply to the frame that reaches the segment's end, partials carry the
segment's words whose end has been reached (joined with the transcript's separator), and the
final reply is the last segment when the whole audio was exactly the transcript's audio.
When the audio stops matching, byte mode takes over for the audio since the last segment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine_stub.transcripts import Matcher, Segment, Transcript, for_sample_rate
from services.common.audio import BYTES_PER_SAMPLE
from services.common.engine_messages import EOF_MESSAGE, RESET_MESSAGE

HASH_HEX_DIGITS = 16

Json = dict[str, Any]


class ProtocolViolation(Exception):
    """The client broke the engine protocol; the session ends with close 1011."""


@dataclass(frozen=True)
class Reply:
    message: Json
    final: bool = False  # the session is over once this reply is sent


def digest_text(audio_bytes: int, sha256_hex: str) -> str:
    """The byte-mode text of a determined segment."""
    return f"bytes={audio_bytes} sha256={sha256_hex[:HASH_HEX_DIGITS]}"


def partial_text(total_bytes: int) -> str:
    """The byte-mode text of a partial."""
    return f"bytes={total_bytes}"


def seconds(offset: int, sample_rate: float) -> float:
    return round(offset / (BYTES_PER_SAMPLE * sample_rate), 6)


def encode(message: Json) -> str:
    """Vosk-like pretty JSON (multi-line, ` : `), so that clients must parse, not compare."""
    return json.dumps(message, ensure_ascii=False, indent=2, separators=(",", " : "))


class Session:
    def __init__(
        self, sample_rate: float, segment_ms: int, table: Sequence[Transcript] = ()
    ) -> None:
        self.sample_rate = sample_rate
        self.words = True
        self._segment_ms = segment_ms
        self._table = table
        self._matcher: Matcher | None = None
        self._started = False
        self.total = 0  # audio bytes received
        self._seg_start = 0  # byte offset where the current (undetermined) segment starts
        self._seg_hash = hashlib.sha256()
        self._next_segment = 0  # index of the current transcript's next segment

    @property
    def transcript(self) -> Transcript | None:
        """The transcript the audio follows, if one is confirmed."""
        return self._matcher.current if self._matcher is not None else None

    def text(self, text: str) -> Reply | None:
        if text == EOF_MESSAGE:
            return Reply(self._final(), final=True)
        if text == RESET_MESSAGE:
            return Reply(self._final())
        try:
            message = json.loads(text)
        except ValueError:
            raise ProtocolViolation("text frame is not JSON") from None
        if not isinstance(message, dict) or not isinstance(message.get("config"), dict):
            raise ProtocolViolation("text frame is neither a config nor eof")
        self._configure(message["config"])
        return None

    def _configure(self, config: Json) -> None:
        rate = config.get("sample_rate", self.sample_rate)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
            raise ProtocolViolation(f"bad sample_rate {rate!r}")
        if not self._started:  # like vosk: the recogniser is made by the first audio frame
            self.sample_rate = rate
            self.words = bool(config.get("words", self.words))

    def audio(self, data: bytes) -> Reply:
        if len(data) % BYTES_PER_SAMPLE:
            raise ProtocolViolation(f"odd-length audio frame ({len(data)} bytes)")
        if not self._started:
            self._started = True
            if self._segment_ms == 0:
                self._matcher = Matcher(for_sample_rate(self._table, self.sample_rate))
        before = self.total
        self.total += len(data)
        if self._matcher is not None:
            self._matcher.feed(data)
        transcript = self.transcript
        if transcript is not None:
            return self._transcript_reply(transcript, data, before)
        cut = self._segment_cut()
        if cut is None:
            self._seg_hash.update(data)
            return Reply({"partial": partial_text(self.total)})
        self._seg_hash.update(data[: cut - before])
        message = self._digest_segment(cut)
        self._start_segment(cut, data[cut - before :])
        return Reply(message)

    def _segment_cut(self) -> int | None:
        """Byte mode: the last segment boundary this frame crossed, if any."""
        if self._segment_ms == 0:
            return None
        size = int(self._segment_ms * self.sample_rate / 1000) * BYTES_PER_SAMPLE
        if size == 0:
            return None
        cut = self.total // size * size
        return cut if cut > self._seg_start else None

    def _transcript_reply(self, transcript: Transcript, data: bytes, before: int) -> Reply:
        pending = transcript.segments[self._next_segment : -1]
        reached = [s for s in pending if s.end_byte <= self.total]
        if not reached:
            self._seg_hash.update(data)
            current = transcript.segments[self._next_segment]
            heard = [w.word for w in current.words if w.end_byte <= self.total]
            return Reply({"partial": transcript.separator.join(heard)})
        cut = max(reached[-1].end_byte, before)
        self._next_segment += len(reached)
        self._start_segment(cut, data[cut - before :])
        return Reply(self._segments_message(reached, transcript.separator))

    def _start_segment(self, offset: int, head: bytes) -> None:
        self._seg_start = offset
        self._seg_hash = hashlib.sha256(head)

    def _final(self) -> Json:
        transcript = self.transcript
        if (
            transcript is not None
            and self._matcher is not None
            and self._matcher.complete(transcript)
            and self._next_segment < len(transcript.segments)
        ):
            rest = transcript.segments[self._next_segment :]
            self._next_segment = len(transcript.segments)
            self._start_segment(self.total, b"")
            return self._segments_message(rest, transcript.separator)
        if self.total == self._seg_start:
            return {"text": ""}
        message = self._digest_segment(self.total)
        self._start_segment(self.total, b"")
        return message

    def _digest_segment(self, end: int) -> Json:
        text = digest_text(end - self._seg_start, self._seg_hash.hexdigest())
        message: Json = {"text": text}
        if self.words:
            start_s = seconds(self._seg_start, self.sample_rate)
            end_s = seconds(end, self.sample_rate)
            message["result"] = [{"conf": 1.0, "end": end_s, "start": start_s, "word": text}]
        return message

    def _segments_message(self, segments: Sequence[Segment], separator: str) -> Json:
        message: Json = {"text": separator.join(s.text for s in segments)}
        if self.words:
            result = []
            for segment in segments:
                for word in segment.words:
                    entry: Json = {"conf": 1.0, "end": word.end}
                    if word.pronunciation is not None:
                        entry["pronunciation"] = word.pronunciation
                    entry.update(start=word.start, word=word.word)
                    result.append(entry)
            message["result"] = result
        return message
