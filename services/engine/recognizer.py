"""Streaming recognition of one session: endpointer + decoder → partials and segments.

Pure logic over two injected objects with pocketsphinx's interface (a `Decoder` and an
`Endpointer`), so it can be tested with fakes. The endpointer (a VAD) cuts the stream into
utterances: speech frames go to the decoder, whose hypothesis is the partial; when the
endpointer leaves speech, the utterance is ended and becomes a determined segment with word
timings (seconds from the start of the session's audio) and posterior confidences.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

# Decoder frames per second (pocketsphinx's default `frate`).
FRAME_RATE = 100
_ALTERNATE = re.compile(r"\(\d+\)$")


class Decoder(Protocol):
    def start_utt(self) -> None: ...
    def process_raw(self, data: bytes, no_search: bool = ..., full_utt: bool = ...) -> None: ...
    def end_utt(self) -> None: ...
    def hyp(self) -> Any: ...
    def seg(self) -> Iterable[Any]: ...


class Endpointer(Protocol):
    @property
    def frame_bytes(self) -> int: ...
    @property
    def in_speech(self) -> bool: ...
    @property
    def speech_start(self) -> float: ...
    def process(self, frame: bytes) -> bytes | None: ...
    def end_stream(self, frame: bytes) -> bytes | None: ...


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    conf: float


@dataclass(frozen=True)
class Partial:
    text: str


@dataclass(frozen=True)
class Segment:
    words: tuple[Word, ...] = ()
    # What joins the words into the text: "" for languages written without spaces (ja).
    separator: str = " "

    @property
    def text(self) -> str:
        return self.separator.join(word.word for word in self.words)


Result = Partial | Segment


def is_filler(word: str) -> bool:
    """Silence, sentence marks and noise words (<s>, </s>, <sil>, [NOISE], ++GARBAGE++)."""
    return word.startswith(("<", "[", "+")) or word == ""


def words_of(segments: Iterable[Any], offset: float) -> list[Word]:
    """The real words of a decoder segmentation, timed from the session's start."""
    words = []
    for seg in segments:
        if is_filler(seg.word):
            continue
        words.append(
            Word(
                word=_ALTERNATE.sub("", seg.word),
                start=round(offset + seg.start_frame / FRAME_RATE, 2),
                end=round(offset + (seg.end_frame + 1) / FRAME_RATE, 2),
                conf=round(min(max(float(seg.prob), 0.0), 1.0), 6),
            )
        )
    return words


@dataclass
class Recognizer:
    """One session's recogniser; `accept` and `finish` each answer with one result."""

    decoder: Decoder
    endpointer: Endpointer
    # Seconds of session audio before this recogniser's first sample (after a reset).
    time_base: float = 0.0
    _pending: bytearray = field(default_factory=bytearray)
    _decoding: bool = False
    _offset: float = 0.0

    def accept(self, pcm: bytes) -> Result:
        """Feed 16-bit mono PCM; a segment if an utterance ended in it, else the partial."""
        done: list[Word] = []
        if self._consume(pcm, done):
            return Segment(tuple(done))
        return Partial(self._partial())

    def finish(self, pcm: bytes = b"") -> Result:
        """End of audio (with its last `pcm`): every word not yet determined, as one segment."""
        done: list[Word] = []
        self._consume(pcm, done)
        # end_stream rejects an empty buffer; one silent sample changes nothing.
        speech = self.endpointer.end_stream(bytes(self._pending) or b"\0\0")
        self._pending.clear()
        self._feed(speech, done)
        if self._decoding:
            self._end(done)
        return Segment(tuple(done))

    def _consume(self, pcm: bytes, done: list[Word]) -> bool:
        """Run every whole endpointer frame; True if an utterance ended."""
        self._pending += pcm
        size = self.endpointer.frame_bytes
        ended = False
        while len(self._pending) >= size:
            frame = bytes(self._pending[:size])
            del self._pending[:size]
            if self._feed(self.endpointer.process(frame), done):
                ended = True
        return ended

    def _feed(self, speech: bytes | None, done: list[Word]) -> bool:
        """Pass one endpointer output to the decoder; True if an utterance ended."""
        if speech is None:
            return False
        if not self._decoding:
            self.decoder.start_utt()
            self._decoding = True
            self._offset = self.time_base + self.endpointer.speech_start
        if speech:  # end_stream may return b"", which process_raw rejects
            self.decoder.process_raw(speech, False, False)
        if not self.endpointer.in_speech:
            self._end(done)
            return True
        return False

    def _end(self, done: list[Word]) -> None:
        self.decoder.end_utt()
        self._decoding = False
        done.extend(words_of(self.decoder.seg(), self._offset))

    def _partial(self) -> str:
        if not self._decoding:
            return ""
        hyp = self.decoder.hyp()
        if hyp is None:
            return ""
        return " ".join(w for w in hyp.hypstr.split() if not is_filler(w))

    def abandon(self) -> None:
        """Drop an unfinished utterance so that the decoder can serve another session."""
        if self._decoding:
            self._decoding = False
            self.decoder.end_utt()
