"""Voice activity: Silero VAD (the ONNX model faster-whisper ships) run on a stream, and the
cutter that turns its speech probabilities into utterances.

`SileroVad` loads the model once per process; each session gets a `VadStream` that carries the
model's recurrent state and the last 64 samples of context from one call to the next, so
feeding audio in pieces gives the same probabilities as feeding it whole (as
`faster_whisper.vad.SileroVADModel` does for a whole file). `UtteranceCutter` is pure logic
over those probabilities (sans-I/O, tested without the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.common.audio import SAMPLE_RATE

WINDOW = 512  # samples per VAD decision (32 ms at 16 kHz)
CONTEXT = 64  # samples of the previous window the model sees before each window
_STATE_SHAPE = (1, 1, 128)


def _model_path() -> Path:
    from faster_whisper.utils import get_assets_path

    return Path(get_assets_path()) / "silero_vad_v6.onnx"


class SileroVad:
    """The VAD model of the process (one ONNX session, shared: `run` is thread-safe)."""

    def __init__(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.log_severity_level = 4
        self._session = onnxruntime.InferenceSession(
            str(_model_path()), providers=["CPUExecutionProvider"], sess_options=options
        )

    def stream(self) -> VadStream:
        return VadStream(self._session)


class VadStream:
    """Speech probabilities of one stream, one per `WINDOW` samples, fed in any pieces."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities of the whole windows completed by `samples` (float32, 16 kHz)."""
        audio = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        whole = len(audio) - len(audio) % WINDOW
        self._pending = audio[whole:].copy()
        if not whole:
            return np.zeros(0, dtype=np.float32)
        windows = audio[:whole].reshape(-1, WINDOW).astype(np.float32)
        contexts = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT:]])
        self._context = windows[-1, -CONTEXT:].copy()
        batch = np.concatenate([contexts, windows], axis=1)
        out, self._h, self._c = self._session.run(
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        return np.asarray(out, dtype=np.float32).reshape(-1)


@dataclass(frozen=True)
class VadSettings:
    threshold: float = 0.5  # a window at or above it is speech
    # Below it a window is silence; between the two, speech goes on if it was speech.
    neg_threshold: float = 0.35
    # Silence that ends an utterance.
    min_silence: float = 0.5
    # Audio kept before the first speech window and after the last (Whisper misses a first
    # word cut too close: 0.2 s lost 遅い of the fixture).
    pad: float = 0.4
    # Utterances are cut at this length so that no decode exceeds Whisper's 30 s window.
    max_utterance: float = 20.0


@dataclass(frozen=True)
class Cut:
    """An utterance boundary in samples from the start of the stream."""

    start: int
    end: int | None  # None: the utterance is still open


class UtteranceCutter:
    """Speech probabilities in, utterances (sample ranges) out.

    An utterance opens at the first speech window (less `pad`) and closes after `min_silence`
    of silence (at the last speech window plus `pad`). One longer than `max_utterance` is cut
    at its quietest window of the last few seconds, and the next utterance starts there.
    """

    def __init__(self, settings: VadSettings) -> None:
        self.settings = settings
        self._pad = round(settings.pad * SAMPLE_RATE)
        self._min_silence = round(settings.min_silence * SAMPLE_RATE)
        self._max = round(settings.max_utterance * SAMPLE_RATE)
        self._position = 0  # samples seen
        self._start: int | None = None  # the open utterance's first sample
        self._last_speech_end = 0  # end of the last speech window
        self._quiet: list[tuple[float, int]] = []  # (probability, window end) in the utterance

    @property
    def open_start(self) -> int | None:
        return self._start

    @property
    def position(self) -> int:
        return self._position

    def feed(self, probabilities: np.ndarray) -> list[Cut]:
        """Utterances closed by these windows (in order), then the open one if any."""
        closed: list[Cut] = []
        s = self.settings
        for probability in probabilities.tolist():
            window_start = self._position
            self._position += WINDOW
            if self._start is None:
                if probability >= s.threshold:
                    self._start = max(0, window_start - self._pad)
                    self._last_speech_end = self._position
                    self._quiet = []
                continue
            if probability >= s.neg_threshold:
                self._last_speech_end = self._position
            self._quiet.append((probability, self._position))
            if self._position - self._last_speech_end >= self._min_silence:
                end = min(self._last_speech_end + self._pad, self._position)
                closed.append(Cut(self._start, end))
                self._start = None
            elif self._position + WINDOW - self._start > self._max:  # the next would exceed
                at = self._quietest_point()
                closed.append(Cut(self._start, at))
                self._start = at
                self._quiet = [q for q in self._quiet if q[1] > at]
        return closed

    def _quietest_point(self) -> int:
        """Where to cut an utterance that is too long: the end of its quietest window in its
        second half (the latest of equals), so both pieces are long enough to decode."""
        assert self._start is not None
        half = self._start + self._max // 2
        candidates = [q for q in self._quiet if q[1] > half] or [(0.0, self._position)]
        _, end = min(candidates, key=lambda q: (q[0], -q[1]))
        return end

    def finish(self, end: int) -> Cut | None:
        """End of the stream (`end`: samples received): the open utterance, closed there."""
        if self._start is None:
            return None
        cut = Cut(self._start, max(end, self._position))
        self._start = None
        return cut
