"""One session's audio cut into utterances, their decodes, and the replies they make (sans-I/O).

`UtteranceStream` is fed 16 kHz float32 audio. Voice activity (a `VadStream` and an
`UtteranceCutter`) closes utterances; each closed utterance needs a final decode, and the open
one wants a partial decode every `partial_interval` seconds of new audio. Decodes are run by
someone else (the scheduler) and delivered back with `deliver_final` / `deliver_partial`.
`take_reply` answers a frame without ever waiting: the determined segment of every closed
utterance whose final has arrived (in order), else the temporary hypothesis.

Times are seconds from the start of the session's audio (at the model's rate).
"""

from __future__ import annotations

import unicodedata
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from services.common.audio import SAMPLE_RATE
from services.engine.agreement import LocalAgreement
from services.engine.recognizer import Partial, Result, Segment, Word
from services.engine.vad import WINDOW, UtteranceCutter, VadSettings, VadStream
from services.engine.whisper_decoder import Decoded

# A decode that Whisper itself thinks is silence is no utterance ("Thank you." on a cough).
NO_SPEECH_PROBABILITY = 0.6


@dataclass(frozen=True)
class StreamSettings:
    vad: VadSettings = field(default_factory=VadSettings)
    # Seconds of new audio between two partial decodes of the open utterance.
    partial_interval: float = 1.0
    # An open utterance gets its first partial decode at this length, none before.
    min_partial_audio: float = 0.5
    # "" joins words without spaces (ja); " " otherwise.
    separator: str = " "


@dataclass(eq=False)
class Utterance:
    index: int
    start: int  # first sample, from the start of the session
    end: int | None = None  # None while open
    audio: np.ndarray | None = None  # kept from closing until its final is decoded
    agreement: LocalAgreement = field(default_factory=LocalAgreement)
    final: tuple[Word, ...] | None = None
    partial_at: int = 0  # session samples when the last partial decode was asked for

    @property
    def closed(self) -> bool:
        return self.end is not None


def clean_word(text: str) -> str:
    """A recognised word without the punctuation Whisper writes around it ("" if only that)."""
    stripped = text.strip()
    while stripped and unicodedata.category(stripped[0]).startswith("P"):
        stripped = stripped[1:]
    while stripped and unicodedata.category(stripped[-1]).startswith("P"):
        stripped = stripped[:-1]
    return stripped


def words_of(decoded: Decoded, offset: float) -> tuple[Word, ...]:
    if decoded.no_speech_probability > NO_SPEECH_PROBABILITY:
        return ()
    words = []
    for w in decoded.words:
        text = clean_word(w.word)
        if text:
            conf = round(min(max(w.probability, 0.0), 1.0), 6)
            start, end = round(offset + w.start, 2), round(offset + w.end, 2)
            words.append(Word(word=text, start=start, end=end, conf=conf))
    return tuple(words)


class UtteranceStream:
    def __init__(self, vad: VadStream, settings: StreamSettings) -> None:
        self.settings = settings
        self._vad = vad
        self._cutter = UtteranceCutter(settings.vad)
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = 0  # session sample of self._audio[0]
        self.received = 0  # samples fed
        self._next_index = 0
        self.open: Utterance | None = None
        self.closed: deque[Utterance] = deque()  # closed, segment not yet sent; in order
        self._keep = round(settings.vad.pad * SAMPLE_RATE) + WINDOW

    # -- audio in -------------------------------------------------------------------------

    def feed(self, samples: np.ndarray) -> list[Utterance]:
        """Take audio; return the utterances it closed (each needs a final decode)."""
        self._audio = np.concatenate([self._audio, samples.astype(np.float32, copy=False)])
        self.received += len(samples)
        newly: list[Utterance] = []
        for cut in self._cutter.feed(self._vad.feed(samples)):
            utterance = self._opened(cut.start)
            assert cut.end is not None
            newly.append(self._close(utterance, cut.end))
        if self._cutter.open_start is not None:
            self._opened(self._cutter.open_start)
        self._trim()
        return newly

    def finish(self) -> list[Utterance]:
        """End of the audio (eof or reset): close the open utterance at the last sample."""
        cut = self._cutter.finish(self.received)
        if cut is None:
            return []
        utterance = self._opened(cut.start)
        return [self._close(utterance, self.received)]

    def _opened(self, start: int) -> Utterance:
        if self.open is None or self.open.start != start:
            self.open = Utterance(self._next_index, start, partial_at=start)
            self._next_index += 1
        return self.open

    def _close(self, utterance: Utterance, end: int) -> Utterance:
        utterance.end = end
        utterance.audio = self._slice(utterance.start, end).copy()
        self.closed.append(utterance)
        if self.open is utterance:
            self.open = None
        return utterance

    def _slice(self, start: int, end: int) -> np.ndarray:
        lo = max(start - self._audio_start, 0)
        return self._audio[lo : max(end - self._audio_start, lo)]

    def _trim(self) -> None:
        """Keep only the open utterance's audio (or the padding a next one may start with)."""
        keep_from = self.open.start if self.open else self.received - self._keep
        drop = keep_from - self._audio_start
        if drop > 0:
            self._audio = self._audio[drop:]
            self._audio_start += drop

    # -- decodes --------------------------------------------------------------------------

    def wants_partial(self) -> bool:
        """Whether the open utterance is due for a partial decode."""
        utterance = self.open
        if utterance is None:
            return False
        s = self.settings
        long_enough = self.received - utterance.start >= s.min_partial_audio * SAMPLE_RATE
        first = utterance.partial_at == utterance.start  # as soon as long enough
        # Each partial re-decodes the whole utterance, so a long one is re-decoded less often
        # (every quarter of its length): its partials cost linearly, not quadratically.
        interval = max(s.partial_interval * SAMPLE_RATE, (self.received - utterance.start) / 4)
        due = first or self.received - utterance.partial_at >= interval
        return long_enough and due

    def partial_audio(self) -> tuple[Utterance, np.ndarray] | None:
        """The open utterance and its audio so far, taken for a partial decode now."""
        utterance = self.open
        if utterance is None:
            return None
        utterance.partial_at = self.received
        return utterance, self._slice(utterance.start, self.received).copy()

    def deliver_partial(self, utterance: Utterance, decoded: Decoded) -> None:
        if utterance.closed or decoded.repetitive:
            return  # a final is on the way, or a looping decode: keep the last hypothesis
        words = words_of(decoded, 0.0)
        utterance.agreement.update([w.word for w in words], self.settings.separator)

    def deliver_final(self, utterance: Utterance, decoded: Decoded) -> None:
        utterance.final = words_of(decoded, utterance.start / SAMPLE_RATE)
        utterance.audio = None

    @property
    def undecoded(self) -> int:
        """Closed utterances whose final decode has not arrived."""
        return sum(1 for u in self.closed if u.final is None)

    # -- replies --------------------------------------------------------------------------

    def take_reply(self) -> Result:
        """The reply to a frame: determined segments whose decode arrived, else the partial."""
        words: list[Word] = []
        decided = False
        while self.closed and self.closed[0].final is not None:
            words.extend(self.closed.popleft().final or ())
            decided = True
        if decided:
            return Segment(tuple(words), self.settings.separator)
        return Partial(self.partial_text())

    def take_final(self) -> Segment:
        """Every determined word not yet sent (every closed utterance must be decoded)."""
        if self.undecoded:
            raise RuntimeError("take_final before every final decode arrived")
        words = [w for u in self.closed for w in u.final or ()]
        self.closed.clear()
        return Segment(tuple(words), self.settings.separator)

    def partial_text(self) -> str:
        pending = [u for u in self.closed if u.final is None]
        if self.open is not None:
            pending.append(self.open)
        shown = [w for u in pending for w in u.agreement.shown]
        return self.settings.separator.join(shown)
