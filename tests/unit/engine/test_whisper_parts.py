"""The sans-I/O parts of the Whisper recogniser, without the Whisper model: local agreement,
utterance cutting, the per-session stream, the decode scheduler, and the model files.

The Silero VAD model is small and ships inside faster-whisper, so its streaming is tested for
real; everything else runs on fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from services.common.audio import SAMPLE_RATE
from services.engine.agreement import LocalAgreement
from services.engine.errors import DecodeError
from services.engine.models import DIGEST_FILE, ModelError, check_model_dir
from services.engine.recognizer import Partial, Segment
from services.engine.scheduler import DecodeScheduler
from services.engine.utterances import StreamSettings, UtteranceStream, clean_word
from services.engine.vad import WINDOW, SileroVad, UtteranceCutter, VadSettings
from services.engine.whisper import MAX_UNDECODED, WhisperSession
from services.engine.whisper_decoder import (
    Decoded,
    DecodedWord,
    compression_ratio,
    without_loop,
)
from tests.support.audio import FIXTURES

FIXTURE = FIXTURES / "ja-chotto-osoi-chushoku.raw"

# -- local agreement ----------------------------------------------------------------------


def test_agreement_commits_what_two_decodes_share() -> None:
    agreement = LocalAgreement()
    assert agreement.update(["the", "meeting"]) == ["the", "meeting"]
    assert agreement.committed == []  # one decode alone commits nothing
    agreement.update(["the", "meeting", "has", "bean"])
    assert agreement.committed == ["the", "meeting"]
    agreement.update(["the", "meeting", "has", "been", "moved"])
    assert agreement.committed == ["the", "meeting", "has"]
    # A later decode that disagrees cannot take committed words back.
    assert agreement.update(["a", "meeting", "has", "been", "moved", "to"]) == [
        "the",
        "meeting",
        "has",
        "been",
        "moved",
        "to",
    ]
    assert agreement.committed == ["the", "meeting", "has"]


def test_agreement_measures_committed_text_when_words_are_cut_differently() -> None:
    """Japanese words are Whisper's own pieces; a new decode may cut 中職 as 中 + 職."""
    agreement = LocalAgreement()
    agreement.update(["ちょっと", "遅い", "中職"], separator="")
    agreement.update(["ちょっと", "遅い", "中職", "を"], separator="")
    assert agreement.committed == ["ちょっと", "遅い", "中職"]
    shown = agreement.update(["ちょっと", "遅", "い", "中", "職", "を", "取る"], separator="")
    assert "".join(shown) == "ちょっと遅い中職を取る"


def test_agreement_finds_where_a_disagreeing_decode_goes_on() -> None:
    """Seen on the fixture: a decode that heard そういちう食 for 遅い中職 (two characters more)
    must not repeat the committed を取るため."""
    agreement = LocalAgreement()
    first = ["ちょっと", "遅", "い", "中", "職", "を", "取", "る", "ため"]
    agreement.update(first, separator="")
    agreement.update([*first, "フ", "ァ"], separator="")
    shown = agreement.update(
        ["ちょっと", "そう", "い", "ち", "う", "食", "を", "取", "る", "ため", "フ", "ァ", "ミ"],
        separator="",
    )
    assert "".join(shown) == "ちょっと遅い中職を取るためファミ"


# -- utterance cutting --------------------------------------------------------------------


def _probabilities(pattern: str) -> np.ndarray:
    """'s' a speech window, '.' a silent one (each WINDOW samples)."""
    return np.array([0.9 if c == "s" else 0.05 for c in pattern], dtype=np.float32)


def test_cutter_opens_with_padding_and_closes_after_the_silence() -> None:
    settings = VadSettings(min_silence=10 * WINDOW / SAMPLE_RATE, pad=2 * WINDOW / SAMPLE_RATE)
    cutter = UtteranceCutter(settings)
    assert cutter.feed(_probabilities("....sss")) == []
    assert cutter.open_start == 2 * WINDOW  # the first speech window, less the padding
    cuts = cutter.feed(_probabilities("." * 10))
    assert [(c.start, c.end) for c in cuts] == [(2 * WINDOW, 9 * WINDOW)]  # last speech + pad
    assert cutter.open_start is None


def test_cutter_cuts_long_speech_so_no_decode_exceeds_the_window() -> None:
    settings = VadSettings(max_utterance=2.0, pad=0.0)
    cutter = UtteranceCutter(settings)
    windows = round(7.0 * SAMPLE_RATE / WINDOW)
    cuts = cutter.feed(_probabilities("s" * windows))
    assert len(cuts) == 3
    assert all(c.end is not None and c.end - c.start <= 2.0 * SAMPLE_RATE for c in cuts)
    assert all(a.end == b.start for a, b in itertools.pairwise(cuts))  # no gap
    final = cutter.finish(windows * WINDOW + 100)
    assert final is not None
    assert final.end == windows * WINDOW + 100


def test_finish_without_speech_closes_nothing() -> None:
    cutter = UtteranceCutter(VadSettings())
    cutter.feed(_probabilities("...."))
    assert cutter.finish(4 * WINDOW) is None


# -- the Silero VAD, streamed ---------------------------------------------------------------


def test_vad_in_pieces_equals_vad_in_one_go() -> None:
    """State and context carried between calls: any frame size gives the same probabilities."""
    audio = np.frombuffer(FIXTURE.read_bytes(), dtype="<i2").astype(np.float32) / 32768
    vad = SileroVad()
    whole = vad.stream().feed(audio)
    stream = vad.stream()
    pieces = np.concatenate([stream.feed(audio[i : i + 1001]) for i in range(0, len(audio), 1001)])
    np.testing.assert_allclose(pieces, whole, atol=1e-5)
    assert whole.max() > 0.9  # the sentence is speech
    assert vad.stream().feed(np.zeros(SAMPLE_RATE, dtype=np.float32)).max() < 0.2


# -- the session's stream of utterances ---------------------------------------------------


class LoudnessVad:
    """A fake VAD: a window is speech when its mean absolute value exceeds 0.1."""

    def __init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)

    def feed(self, samples: np.ndarray) -> np.ndarray:
        audio = np.concatenate([self._pending, samples])
        whole = len(audio) - len(audio) % WINDOW
        self._pending = audio[whole:]
        windows = audio[:whole].reshape(-1, WINDOW)
        return (np.abs(windows).mean(axis=1) > 0.1).astype(np.float32)


def _tone(seconds: float) -> np.ndarray:
    return np.full(round(seconds * SAMPLE_RATE), 0.5, dtype=np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def _decoded(*words: str, start: float = 0.0) -> Decoded:
    at = [start + i * 0.5 for i in range(len(words))]
    return Decoded(tuple(DecodedWord(w, t, t + 0.4, 0.9) for w, t in zip(words, at, strict=True)))


def _stream(**settings: float) -> UtteranceStream:
    vad = VadSettings(min_silence=0.5, pad=0.1)
    return UtteranceStream(LoudnessVad(), StreamSettings(vad=vad, **settings))  # type: ignore[arg-type]


def test_stream_closes_utterances_and_answers_without_waiting() -> None:
    stream = _stream()
    assert stream.feed(_silence(1.0)) == []
    assert stream.feed(_tone(1.5)) == []
    assert stream.wants_partial()
    closed = stream.feed(_silence(1.0))
    assert len(closed) == 1
    utterance = closed[0]
    assert utterance.audio is not None
    assert abs(len(utterance.audio) / SAMPLE_RATE - 1.5 - 0.2) < 0.1  # speech plus padding
    # Not decoded yet: the reply is the (empty) hypothesis, never a wait.
    assert stream.take_reply() == Partial("")
    stream.deliver_final(utterance, _decoded("hello", "world."))
    segment = stream.take_reply()
    assert isinstance(segment, Segment)
    assert segment.text == "hello world"  # Whisper's punctuation dropped
    # Times are seconds from the start of the session: the utterance began near 0.9 s.
    assert segment.words[0].start == pytest.approx(utterance.start / SAMPLE_RATE, abs=0.01)
    assert 0.85 <= segment.words[0].start <= 1.0
    assert stream.take_reply() == Partial("")


def test_finals_go_out_in_utterance_order() -> None:
    stream = _stream()
    first = stream.feed(np.concatenate([_tone(1.0), _silence(1.0)]))[0]
    second = stream.feed(np.concatenate([_tone(1.0), _silence(1.0)]))[0]
    stream.deliver_final(second, _decoded("two"))
    assert stream.take_reply() == Partial("")  # the first is not decoded: hold the second
    stream.deliver_final(first, _decoded("one"))
    reply = stream.take_reply()
    assert isinstance(reply, Segment)
    assert reply.text == "one two"


def test_partials_show_the_open_utterance_and_pending_ones() -> None:
    stream = _stream(partial_interval=0.5)
    stream.feed(_tone(0.3))
    assert not stream.wants_partial()  # too short yet (with its 0.1 s of padding)
    stream.feed(_tone(0.3))
    assert stream.wants_partial()  # the first as soon as it is long enough
    stream.feed(_tone(0.4))
    taken = stream.partial_audio()
    assert taken is not None
    utterance, _audio = taken
    assert not stream.wants_partial()  # just asked for
    stream.deliver_partial(utterance, _decoded("hel"))
    assert stream.take_reply() == Partial("hel")
    stream.feed(_tone(0.6))
    assert stream.wants_partial()


def test_long_utterances_are_re_decoded_less_often() -> None:
    """Partials of a long utterance come every quarter of its length, not every second."""
    stream = _stream(partial_interval=1.0)
    stream.feed(_tone(12.0))
    stream.partial_audio()  # a partial of 12 s of audio taken now
    stream.feed(_tone(2.0))
    assert not stream.wants_partial()  # 2 s later, 14 s long: due every 14 / 4 = 3.5 s
    stream.feed(_tone(2.4))
    assert stream.wants_partial()  # 4.4 s later, 16.4 s long: every 4.1 s


def test_finish_closes_the_open_utterance_at_the_last_sample() -> None:
    stream = _stream()
    stream.feed(np.concatenate([_silence(0.5), _tone(1.0)]))
    closed = stream.finish()
    assert len(closed) == 1
    assert closed[0].end == stream.received
    with pytest.raises(RuntimeError):
        stream.take_final()
    stream.deliver_final(closed[0], _decoded("bye"))
    assert stream.take_final().text == "bye"
    assert stream.finish() == []


def test_buffered_audio_stays_bounded_in_silence() -> None:
    stream = _stream()
    for _ in range(50):
        stream.feed(_silence(1.0))
    assert len(stream._audio) < SAMPLE_RATE  # only the padding a next utterance may need


def test_japanese_text_is_the_plain_concatenation() -> None:
    stream = UtteranceStream(LoudnessVad(), StreamSettings(separator=""))
    stream.feed(_tone(1.0))
    (utterance,) = stream.finish()
    stream.deliver_final(utterance, _decoded("ちょっと", "遅", "い", "。"))
    final = stream.take_final()
    assert final.text == "ちょっと遅い"
    assert [w.word for w in final.words] == ["ちょっと", "遅", "い"]


def test_punctuation_is_cut_from_words() -> None:
    assert clean_word(" Thursday,") == "Thursday"
    assert clean_word(" don't") == "don't"
    assert clean_word("、") == ""
    assert compression_ratio("ちょっと押さ一" * 15) > 2.4 > compression_ratio("hello there")


def test_a_looping_decode_is_cut_to_one_copy() -> None:
    """Whisper on a trimmed window may say the sentence again and again (seen on flite rms)."""
    sentence = [11, 12, 13, 14, 15, 16]
    assert without_loop(sentence * 4 + sentence[:3]) == sentence
    assert without_loop([1, 2, *([7, 8] * 5)]) == [1, 2, 7, 8]
    assert without_loop([5, 9, 9, 6]) == [5, 9, 9, 6]  # "very very"
    assert without_loop([1, 2, 3, 2, 3]) == [1, 2, 3, 2, 3]  # "thank you thank you"


# -- the scheduler --------------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.batches: list[tuple[bool, int]] = []
        self.skipped = 0
        self.changed = asyncio.Event()  # set after each batch is delivered

    def decoded(self, final: bool, batch: int, seconds: float, audio_seconds: float) -> None:
        self.batches.append((final, batch))
        self.changed.set()

    def partial_skipped(self, count: int) -> None:
        self.skipped += count


class Client:
    def __init__(self, stream: UtteranceStream) -> None:
        self.stream = stream
        self.deliveries = 0

    def delivered(self, error: BaseException | None = None) -> None:
        self.deliveries += 1


class GatedDecode:
    """A decode that blocks until the test opens the gate; records each batch's kind."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, int]] = []
        self.gate = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def __call__(self, batch: Sequence[np.ndarray], final: bool) -> list[Decoded]:
        self.calls.append((final, len(batch)))  # in the order decodes start
        asyncio.run_coroutine_threadsafe(self.gate.wait(), self._loop).result(timeout=10)
        return [_decoded("w") for _ in batch]


@contextlib.asynccontextmanager
async def _one_slot(max_batch: int) -> AsyncIterator[tuple[GatedDecode, Stats, DecodeScheduler]]:
    """A scheduler of one decode slot over a gated decode; the gate opens on the way out."""
    decode = GatedDecode()
    stats = Stats()
    scheduler = DecodeScheduler(decode, parallel=1, max_batch=max_batch, stats=stats)
    try:
        yield decode, stats, scheduler
    finally:
        decode.gate.set()
        await scheduler.aclose()


def _asking_partial(scheduler: DecodeScheduler, **settings: float) -> Client:
    """A session with a second of tone, whose partial it has asked the scheduler for."""
    client = Client(_stream(**settings))
    client.stream.feed(_tone(1.0))
    scheduler.request_partial(client)
    return client


async def _settle(stats: Stats, until: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not until():
            stats.changed.clear()
            await stats.changed.wait()


async def test_finals_run_before_partials_and_partials_are_skipped_when_behind() -> None:
    async with _one_slot(max_batch=2) as (decode, stats, scheduler):
        _asking_partial(scheduler)  # takes the only slot, blocked at the gate
        clients = [_asking_partial(scheduler, partial_interval=0.5) for _ in range(3)]
        for client in clients:
            scheduler.request_partial(client)  # asked again: one per session, never a queue
        finals = [Client(_stream()) for _ in range(3)]
        for client in finals:
            (utterance,) = client.stream.feed(np.concatenate([_tone(1.0), _silence(1.0)]))
            scheduler.submit_final(client, utterance)
        for client in clients:
            client.stream.feed(_tone(1.2))  # more partials fall due while the engine is busy
        decode.gate.set()
        await _settle(stats, lambda: len(stats.batches) == 5)
    # The partial that was running; the first final at once, beside it, in a slot of its own;
    # the other two finals batched; only then the three waiting partials (batches of ≤ 2).
    assert decode.calls == [(False, 1), (True, 1), (True, 2), (False, 2), (False, 1)]
    assert all(c.stream.take_reply() != Partial("") for c in finals)
    assert stats.skipped >= 3  # each waiting session missed at least one due partial


async def test_a_closed_utterance_drops_its_pending_partial() -> None:
    async with _one_slot(max_batch=4) as (decode, stats, scheduler):
        _asking_partial(scheduler)  # takes the only slot, blocked at the gate
        client = _asking_partial(scheduler)
        (utterance,) = client.stream.feed(_silence(1.0))
        scheduler.submit_final(client, utterance)
        decode.gate.set()
        await _settle(stats, lambda: len(stats.batches) == 2)
    assert decode.calls == [(False, 1), (True, 1)]  # no partial of a closed utterance
    assert client.deliveries == 1


# -- model files --------------------------------------------------------------------------


def _model_dir(tmp_path: Path, content: bytes = b"weights") -> Path:
    directory = tmp_path / "whisper-test"
    directory.mkdir()
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.json"):
        (directory / name).write_bytes(content if name == "model.bin" else b"{}")
    (directory / DIGEST_FILE).write_text(hashlib.sha256(content).hexdigest() + "\n")
    return directory


def test_a_sound_model_directory_passes(tmp_path: Path) -> None:
    check_model_dir(_model_dir(tmp_path))


def test_a_changed_model_is_refused(tmp_path: Path) -> None:
    directory = _model_dir(tmp_path)
    (directory / "model.bin").write_bytes(b"other weights")
    with pytest.raises(ModelError, match="SHA-256"):
        check_model_dir(directory)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    directory = _model_dir(tmp_path)
    (directory / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"tokenizer\.json"):
        check_model_dir(directory)
    with pytest.raises(ModelError, match="not a directory"):
        check_model_dir(tmp_path / "nowhere")


# -- one session over the scheduler: backpressure and timeouts ------------------------------


class FakeVadSource:
    def stream(self) -> LoudnessVad:
        return LoudnessVad()


class FakeRecognition:
    """What a `WhisperSession` needs of `WhisperRecognition`, without the model."""

    def __init__(self, scheduler: DecodeScheduler, decode_timeout: float) -> None:
        self.scheduler = scheduler
        self.spec = SimpleNamespace(decode_timeout=decode_timeout)
        self.vad = FakeVadSource()
        self.stream_settings = StreamSettings(vad=VadSettings(min_silence=0.5, pad=0.1))


def _pcm(samples: np.ndarray) -> bytes:
    return (samples * 32767).astype("<i2").tobytes()


async def test_a_session_far_ahead_of_its_decodes_waits_for_them() -> None:
    """Past MAX_UNDECODED closed utterances, a frame's reply waits for the oldest final."""
    async with _one_slot(max_batch=1) as (decode, _, scheduler):
        session = WhisperSession(FakeRecognition(scheduler, decode_timeout=10), "s")  # type: ignore[arg-type]
        utterance = _pcm(np.concatenate([_tone(0.6), _silence(0.8)]))
        try:
            for _ in range(MAX_UNDECODED):
                assert await session.accept(utterance) == Partial("")  # answered at once
            blocked = asyncio.ensure_future(session.accept(utterance))
            await asyncio.sleep(0)  # let it run up to its wait
            assert not blocked.done()
            decode.gate.set()
            async with asyncio.timeout(10):
                reply = await blocked
            assert isinstance(reply, Segment)
            final = await session.finish(b"")
            assert isinstance(final, Segment)
        finally:
            await session.aclose()


async def test_eof_gives_up_when_no_final_comes() -> None:
    """A decode that never returns ends the session with a DecodeError (close 1011)."""
    decode = GatedDecode()  # never opened
    scheduler = DecodeScheduler(decode, parallel=1, max_batch=1, stats=Stats())
    session = WhisperSession(FakeRecognition(scheduler, decode_timeout=0.2), "s")  # type: ignore[arg-type]
    try:
        await session.accept(_pcm(_tone(1.0)))
        with pytest.raises(DecodeError, match="no final decode"):
            await session.finish(b"")
    finally:
        decode.gate.set()
        await session.aclose()
        await scheduler.aclose()
