"""The engine's protocol state machine and recogniser, without sockets or a real model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.engine.errors import ProtocolError
from services.engine.protocol import EOF_MESSAGE, RESET_MESSAGE, EngineSession, Text
from services.engine.recognizer import Partial, Recognizer, Segment, Word, words_of


@dataclass
class Seg:
    word: str
    start_frame: int
    end_frame: int
    prob: float = 0.9


@dataclass
class Hyp:
    hypstr: str


@dataclass
class FakeDecoder:
    """Hears one word per 100 ms of audio it is given: w0, w1, …"""

    audio: bytearray = field(default_factory=bytearray)
    utterances: int = 0

    def start_utt(self) -> None:
        self.audio.clear()

    def process_raw(self, data: bytes, no_search: bool = False, full_utt: bool = False) -> None:
        if not data:
            raise IndexError("Out of bounds on buffer access (axis 0)")  # as pocketsphinx's
        self.audio += data

    def end_utt(self) -> None:
        self.utterances += 1

    def _words(self) -> list[str]:
        return [f"w{i}" for i in range(len(self.audio) // 3200)]

    def hyp(self) -> Any:
        return Hyp(" ".join(self._words()))

    def seg(self) -> list[Seg]:
        segs = [Seg("<s>", 0, 4)]
        segs += [Seg(word, 10 * i, 10 * i + 9) for i, word in enumerate(self._words())]
        return [*segs, Seg("<sil>", 90, 95)]


@dataclass
class FakeEndpointer:
    """Speech is any frame that is not all zeros; the utterance ends on the first silent one."""

    frame_bytes: int = 320
    in_speech: bool = False
    speech_start: float = 0.0
    position: int = 0

    def process(self, frame: bytes) -> bytes | None:
        start = self.position
        self.position += len(frame)
        if any(frame):
            if not self.in_speech:
                self.in_speech, self.speech_start = True, start / 32000
            return frame
        if self.in_speech:
            self.in_speech = False
            return frame
        return None

    def end_stream(self, frame: bytes) -> bytes | None:
        was = self.in_speech
        self.in_speech = False
        # Like pocketsphinx's: b"" when in speech with nothing left to return.
        return (frame if any(frame) else b"") if was else None


SPEECH = b"\x01\x00" * 1600  # 100 ms


def test_words_drop_fillers_and_alternate_markers() -> None:
    """Fillers and noise words are dropped, "(2)" markers stripped, times offset in seconds."""
    segs = [
        Seg("<s>", 0, 3),
        Seg("and(2)", 4, 20, 0.5),
        Seg("[NOISE]", 21, 30),
        Seg("</s>", 31, 40),
    ]
    assert words_of(segs, 1.0) == [Word("and", 1.04, 1.21, 0.5)]


def test_segment_when_the_endpointer_leaves_speech() -> None:
    """Partials while in speech, a timed segment once silence follows, empty partial after."""
    recognizer = Recognizer(FakeDecoder(), FakeEndpointer())
    assert recognizer.accept(bytes(3200)) == Partial("")
    assert recognizer.accept(SPEECH * 2) == Partial("w0 w1")
    segment = recognizer.accept(bytes(640))
    assert isinstance(segment, Segment)
    assert segment.text == "w0 w1"
    assert segment.words[0].start == 0.1
    assert recognizer.accept(bytes(640)) == Partial("")


def test_finish_ends_an_utterance_in_progress() -> None:
    """The final segment holds the words of the utterance still open at the end."""
    recognizer = Recognizer(FakeDecoder(), FakeEndpointer())
    recognizer.accept(SPEECH)
    assert recognizer.finish(SPEECH[:100]).text == "w0"


def test_finish_with_nothing_pending_ends_the_utterance() -> None:
    """An eof right after a whole frame of speech still gives that speech's words."""
    recognizer = Recognizer(FakeDecoder(), FakeEndpointer())
    recognizer.accept(SPEECH)
    assert recognizer.finish().text == "w0"


def test_abandon_frees_the_decoder() -> None:
    """Abandoning a session mid-utterance ends the decoder's utterance."""
    decoder = FakeDecoder()
    recognizer = Recognizer(decoder, FakeEndpointer())
    recognizer.accept(SPEECH)
    recognizer.abandon()
    assert decoder.utterances == 1


def test_only_the_exact_eof_bytes_end_the_audio() -> None:
    """`{"eof" : 1}` and `{"reset" : 1}` are recognised byte for byte; other text is an error."""
    session = EngineSession(16000)
    assert session.on_text(EOF_MESSAGE) is Text.EOF
    assert session.on_text(RESET_MESSAGE) is Text.RESET
    for text in ('{"eof": 1}', "eof", "[]", '{"config": 1}'):
        with pytest.raises(ProtocolError):
            session.on_text(text)


def test_config_counts_only_before_audio() -> None:
    """A config sets rate and words before the first audio; later ones are ignored."""
    session = EngineSession(16000)
    session.on_text(json.dumps({"config": {"sample_rate": 8000, "words": 0, "model": "/x"}}))
    assert (session.sample_rate, session.words) == (8000, False)
    session.on_audio(bytes(160))
    assert session.on_text(json.dumps({"config": {"sample_rate": 44100}})) is Text.CONFIG
    assert session.sample_rate == 8000


@pytest.mark.parametrize("rate", ["fast", 0, 1e9, True, None])
@pytest.mark.parametrize("after_audio", [False, True])
def test_bad_sample_rate_is_an_error(rate: object, after_audio: bool) -> None:
    """A config with an unusable sample rate is a protocol error, even after audio."""
    session = EngineSession(16000)
    if after_audio:
        session.on_audio(bytes(2))
    with pytest.raises(ProtocolError):
        session.on_text(json.dumps({"config": {"sample_rate": rate}}))


def test_odd_bytes_are_carried_to_the_next_frame() -> None:
    """An odd last byte waits for the next frame instead of shifting later samples."""
    session = EngineSession(16000)
    assert session.on_audio(b"\x01\x02\x03") == b"\x01\x02"
    assert session.on_audio(b"\x04\x05") == b"\x03\x04"
    assert session.flush() == b""
    assert session.bytes_received == 5


def test_resampling_keeps_the_duration() -> None:
    """Audio announced at 8 kHz reaches the decoder at 16 kHz, as long as it was."""
    session = EngineSession(16000)
    session.on_text(json.dumps({"config": {"sample_rate": 8000}}))
    out = b"".join(session.on_audio(bytes(1600)) for _ in range(10)) + session.flush()
    assert len(out) == 32000
    assert session.audio_seconds == 1.0


def test_replies_are_rendered_as_vosk_server_does() -> None:
    """Partials, segments with words, segments without words and empty segments."""
    session = EngineSession(16000)
    assert json.loads(session.reply(Partial("hi"))) == {"partial": "hi"}
    assert json.loads(session.reply(Segment())) == {"text": ""}
    segment = Segment((Word("hi", 0.5, 0.8, 0.9),))
    assert json.loads(session.reply(segment)) == {
        "result": [{"conf": 0.9, "end": 0.8, "start": 0.5, "word": "hi"}],
        "text": "hi",
    }
    session.words = False
    assert json.loads(session.reply(segment)) == {"text": "hi"}
