"""The Whisper recogniser, seen from the event loop: one model, one VAD, one scheduler per
process, and a `WhisperSession` per connection with the same interface as pocketsphinx's.

A frame's reply never waits for a decode: it is the latest hypothesis, or the determined
segments whose final decodes have arrived since the last reply. Only eof/reset wait, for the
finals of every utterance heard. A session whose client sends faster than the engine decodes
(more than `MAX_UNDECODED` closed utterances waiting) waits for its oldest final before
answering the next frame, so no session's backlog grows without bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.audio import SAMPLE_RATE
from services.engine.errors import DecodeError
from services.engine.metrics import Metrics
from services.engine.recognizer import Result
from services.engine.scheduler import DecodeScheduler
from services.engine.utterances import StreamSettings, UtteranceStream
from services.engine.vad import SileroVad
from services.engine.whisper_decoder import UNSPACED_LANGUAGES, WhisperDecoder

log = logging.getLogger(__name__)

MAX_UNDECODED = 4
INT16_FULL_SCALE = 32768.0  # s16le samples → Whisper's float audio in [-1, 1)


@dataclass(frozen=True)
class WhisperSpec:
    model_dir: str
    language: str
    compute_type: str
    threads: int
    parallel: int
    max_batch: int
    beam_size: int
    window_margin: float
    decode_timeout: float
    stream: StreamSettings


class _Stats:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def decoded(self, final: bool, batch: int, seconds: float, audio_seconds: float) -> None:
        kind = "final" if final else "partial"
        self._metrics.decodes.labels(kind).inc(batch)
        self._metrics.decode_batch_seconds.labels(kind).observe(seconds)

    def partial_skipped(self, count: int) -> None:
        self._metrics.partials_skipped.inc(count)


class WhisperRecognition:
    """The model, the VAD and the scheduler of the process, shared by every session."""

    def __init__(self, spec: WhisperSpec, metrics: Metrics) -> None:
        self.spec = spec
        began = time.monotonic()
        self.decoder = WhisperDecoder(
            model_dir=Path(spec.model_dir),
            language=spec.language,
            compute_type=spec.compute_type,
            threads=spec.threads,
            parallel=spec.parallel,
            beam_size=spec.beam_size,
            margin=spec.window_margin,
        )
        self.vad = SileroVad()
        self.load_seconds = time.monotonic() - began
        separator = "" if spec.language in UNSPACED_LANGUAGES else " "
        self.stream_settings = dataclasses.replace(spec.stream, separator=separator)
        self.scheduler = DecodeScheduler(
            self.decoder.decode, spec.parallel, spec.max_batch, _Stats(metrics)
        )

    async def warm_up(self) -> None:
        """One decode of a second of noise, so that the first session pays no first touches."""
        noise = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE).astype(np.float32)
        await asyncio.to_thread(self.decoder.decode, [noise])

    def session(self, session_id: str) -> WhisperSession:
        return WhisperSession(self, session_id)

    async def aclose(self) -> None:
        await self.scheduler.aclose()


class WhisperSession:
    """One connection's recognition; `accept` answers at once, `finish` awaits the finals."""

    label = "whisper"

    def __init__(self, recognition: WhisperRecognition, session_id: str) -> None:
        self.session_id = session_id
        self._scheduler = recognition.scheduler
        self._timeout = recognition.spec.decode_timeout
        self.stream = UtteranceStream(recognition.vad.stream(), recognition.stream_settings)
        self._changed = asyncio.Event()
        self._error: BaseException | None = None

    def delivered(self, error: BaseException | None = None) -> None:
        if error is not None and self._error is None:
            self._error = error
        self._changed.set()

    def _feed(self, pcm: bytes) -> None:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / INT16_FULL_SCALE
        for utterance in self.stream.feed(samples):
            self._scheduler.submit_final(self, utterance)
        if self.stream.wants_partial():
            self._scheduler.request_partial(self)

    async def accept(self, pcm: bytes) -> Result:
        self._feed(pcm)
        await self._wait_until(lambda: self.stream.undecoded <= MAX_UNDECODED)
        return self.stream.take_reply()

    async def finish(self, pcm: bytes, time_base: float | None = None) -> Result:
        """The final segment at eof or reset (times go on after a reset: the stream counts)."""
        self._feed(pcm)
        for utterance in self.stream.finish():
            self._scheduler.submit_final(self, utterance)
        await self._wait_until(lambda: self.stream.undecoded == 0)
        return self.stream.take_final()

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                while True:
                    if self._error is not None:
                        raise DecodeError(f"decoding failed: {self._error}")
                    if condition():
                        return
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise DecodeError(f"no final decode within {self._timeout} s") from None

    async def aclose(self) -> None:
        self._scheduler.forget(self)
