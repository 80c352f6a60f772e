"""The worker-process side of decoding: pocketsphinx decoders and the sessions using them.

Each worker process holds one `DecoderBank`: decoders loaded once when the process starts
(loading the en-US model takes ~0.5 s and ~90 MB per decoder, so a decoder is reused by
session after session, never created per session) and the recognisers of the sessions
assigned to it. pocketsphinx's Python binding holds the GIL while decoding, which is why
decoding runs in processes, not threads.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from services.common.audio import SAMPLE_RATE
from services.engine.recognizer import Recognizer, Result


@dataclass(frozen=True)
class ModelSpec:
    """What a worker needs to build decoders (picklable, sent to the worker at start)."""

    hmm: str | None = None
    lm: str | None = None
    dictionary: str | None = None
    sample_rate: int = SAMPLE_RATE
    fwdflat: bool = False
    maxhmmpf: int = 10000

    def decoder_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "samprate": self.sample_rate,
            "fwdflat": self.fwdflat,
            "maxhmmpf": self.maxhmmpf,
            "loglevel": "FATAL",
        }
        for key, value in (("hmm", self.hmm), ("lm", self.lm), ("dict", self.dictionary)):
            if value is not None:
                options[key] = value
        return options


class DecoderBank:
    """The decoders of one worker process and the sessions currently using them."""

    def __init__(self, spec: ModelSpec, preload: int) -> None:
        import pocketsphinx  # imported here: only worker processes load the model

        self._ps = pocketsphinx
        self.spec = spec
        self._free: list[Any] = [self._new_decoder() for _ in range(max(preload, 1))]
        # The initial cepstral mean, restored for every session so that one session's
        # audio never changes another's result (live CMN adapts while decoding).
        self._cmn: str = self._free[0].get_cmn()
        for decoder in self._free:
            self._warm_up(decoder)
        self._sessions: dict[str, tuple[Any, Recognizer]] = {}

    def _new_decoder(self) -> Any:
        return self._ps.Decoder(**self.spec.decoder_options())

    def _warm_up(self, decoder: Any) -> None:
        """Decode a second of noise, so that the first session does not pay for page faults
        and first-touch allocations (its first final took 0.6 s instead of 0.2 s)."""
        import numpy as np

        noise = np.random.default_rng(0).normal(0, 300, self.spec.sample_rate)
        decoder.start_utt()
        decoder.process_raw(noise.astype("<i2").tobytes(), False, False)
        decoder.end_utt()
        decoder.set_cmn(self._cmn)

    def _recognizer(self, decoder: Any, time_base: float) -> Recognizer:
        endpointer = self._ps.Endpointer(sample_rate=self.spec.sample_rate)
        return Recognizer(decoder, endpointer, time_base=time_base)

    def open(self, session: str) -> None:
        decoder = self._free.pop() if self._free else self._new_decoder()
        decoder.set_cmn(self._cmn)
        self._sessions[session] = (decoder, self._recognizer(decoder, 0.0))

    def accept(self, session: str, pcm: bytes) -> Result:
        return self._sessions[session][1].accept(pcm)

    def finish(self, session: str, pcm: bytes, time_base: float | None) -> Result:
        """The final segment; with `time_base` (a reset) the session goes on from there."""
        decoder, recognizer = self._sessions[session]
        result = recognizer.finish(pcm)
        if time_base is not None:
            self._sessions[session] = (decoder, self._recognizer(decoder, time_base))
        return result

    def close(self, session: str) -> None:
        entry = self._sessions.pop(session, None)
        if entry is None:
            return
        decoder, recognizer = entry
        try:
            recognizer.abandon()
        except RuntimeError:  # a decoder in a bad state is not reused
            logging.getLogger(__name__).warning("dropping a decoder that failed to reset")
            return
        self._free.append(decoder)


# The bank of this worker process. Module state on purpose: a worker process exists to hold
# exactly one bank, set by `init_worker` when the process starts.
_bank: DecoderBank | None = None


def init_worker(spec: ModelSpec, preload: int) -> None:
    global _bank
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    _bank = DecoderBank(spec, preload)


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the engine process dies, even by SIGKILL, so that
    no orphan keeps decoding (elsewhere the call-queue EOF ends the worker eventually)."""
    if sys.platform != "linux":
        return
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _the_bank() -> DecoderBank:
    if _bank is None:
        raise RuntimeError("worker not initialised")
    return _bank


def ready() -> int:
    """The worker's process id, once its decoders are loaded."""
    _the_bank()
    return os.getpid()


def open_session(session: str) -> None:
    _the_bank().open(session)


def accept(session: str, pcm: bytes) -> Result:
    return _the_bank().accept(session, pcm)


def finish(session: str, pcm: bytes, time_base: float | None) -> Result:
    return _the_bank().finish(session, pcm, time_base)


def close_session(session: str) -> None:
    _the_bank().close(session)
