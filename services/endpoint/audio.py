"""Audio normalisation: whatever the client sends → 16 kHz mono s16le for the backend.

PCM (s16le, 8 to 48 kHz, mono or stereo) is down-mixed and resampled with soxr
(`services.common.audio.PcmResampler`); a sample split across frames is carried. FLAC is
decoded as a stream with pyflac, whose `StreamDecoder` runs one thread per decoder and
calls back from it: decoded blocks cross to the event loop through a lock-protected list,
its input queue is bounded (the session waits for the decoder instead of queueing more),
and the decoder is always finished — its thread joined — off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

import numpy as np
import pyflac

from services.common.audio import PcmResampler
from services.endpoint.handshake import MAX_CHANNELS, MAX_RATE, MIN_RATE, AudioSpec

TARGET_RATE = 16000
# Undecoded FLAC the session may hand the decoder thread before it waits for it.
MAX_PENDING_FLAC_BYTES = 256 * 1024
# Input after which a stream that has produced no audio at all is not FLAC.
FLAC_SYNC_LIMIT_BYTES = 256 * 1024
FLAC_WAIT_SECONDS = 10.0

# pyflac logs every libFLAC error itself, from its thread and without the session id;
# the session reports the error to the client and in its summary line instead.
logging.getLogger("pyflac").setLevel(logging.CRITICAL)


class InvalidAudio(Exception):
    """The client's bytes are not audio of the declared content type."""


class FlacStream:
    """Streaming FLAC → interleaved s16le at the stream's own rate and channels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocks: list[bytes] = []
        self._format: tuple[int, int] | None = None
        self._error = ""
        self._fed = 0
        self._decoded_frames = 0
        self._finished = False
        self._loop = asyncio.get_running_loop()
        self._progress = asyncio.Event()
        self._decoder: Any = pyflac.StreamDecoder(write_callback=self._on_block)

    # Runs on the decoder's thread.
    def _on_block(self, audio: np.ndarray, rate: int, channels: int, samples: int) -> None:
        with self._lock:
            if self._format is None:
                self._format = (rate, channels)
            if (rate, channels) != self._format:
                self._error = "the FLAC stream changed its rate or channels"
            elif not (MIN_RATE <= rate <= MAX_RATE and 1 <= channels <= MAX_CHANNELS):
                self._error = f"FLAC of {rate} Hz and {channels} channels is not supported"
            else:
                self._blocks.append(np.ascontiguousarray(audio, dtype="<i2").tobytes())
                self._decoded_frames += samples
        self._loop.call_soon_threadsafe(self._progress.set)

    @property
    def format(self) -> tuple[int, int] | None:
        with self._lock:
            return self._format

    def _take(self) -> bytes:
        with self._lock:
            if self._error:
                raise InvalidAudio(self._error)
            blocks, self._blocks = self._blocks, []
        return b"".join(blocks)

    def _pending_input(self) -> int:
        # pyflac keeps undecoded input in a deque that its read callback drains, under its lock.
        with self._decoder._lock:
            return sum(len(chunk) for chunk in self._decoder._buffer)

    async def feed(self, data: bytes) -> bytes:
        self._fed += len(data)
        self._decoder.process(data)
        deadline = self._loop.time() + FLAC_WAIT_SECONDS
        while self._pending_input() > MAX_PENDING_FLAC_BYTES and not self._decoder._error:
            if self._loop.time() > deadline:
                raise InvalidAudio("the FLAC decoder made no progress")
            self._progress.clear()
            # Decoded blocks signal progress; libFLAC's errors do not, hence the short wait.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), 0.05)
        if self._decoder._error:
            raise InvalidAudio(f"not a valid FLAC stream: {self._decoder._error}")
        if self._fed > FLAC_SYNC_LIMIT_BYTES and self.format is None:
            raise InvalidAudio("no FLAC audio found in the first bytes of the stream")
        return self._take()

    async def finish(self) -> bytes:
        """Decode what is left and end the decoder; raise InvalidAudio if it was not FLAC."""
        try:
            await self._close()
        except pyflac.DecoderProcessException as exc:
            raise InvalidAudio(f"not a valid FLAC stream: {exc}") from None
        tail = self._take()
        if self._fed and self.format is None:
            raise InvalidAudio("no FLAC audio found in the stream")
        return tail

    async def _close(self) -> None:
        if not self._finished:
            self._finished = True
            # pyflac's finish() waits for its thread (it polls and joins): not on the loop.
            await asyncio.to_thread(self._decoder.finish)

    async def aclose(self) -> None:
        """End the decoder thread without decoding further (idempotent)."""
        if not self._finished:
            self._decoder._done = True  # the read callback then ends the stream at once
            self._decoder._event.set()
        with contextlib.suppress(pyflac.DecoderProcessException):
            await self._close()


class AudioNormaliser:
    """Fed the client's bytes as they come; returns normalised PCM as soon as it can."""

    def __init__(self, spec: AudioSpec) -> None:
        self.spec = spec
        self.received_bytes = 0
        self.output_bytes = 0
        self._flac = FlacStream() if spec.encoding == "flac" else None
        self._pcm: PcmResampler | None = (
            None if self._flac else PcmResampler(spec.rate, TARGET_RATE, spec.channels)
        )

    def _resampler(self) -> PcmResampler | None:
        if self._pcm is None and self._flac is not None and self._flac.format is not None:
            rate, channels = self._flac.format
            self._pcm = PcmResampler(rate, TARGET_RATE, channels)
        return self._pcm

    def _out(self, pcm: bytes) -> bytes:
        self.output_bytes += len(pcm)
        return pcm

    async def feed(self, data: bytes) -> bytes:
        self.received_bytes += len(data)
        if self._flac is not None:
            data = await self._flac.feed(data)
        resampler = self._resampler()
        return self._out(resampler.feed(data)) if resampler and data else b""

    async def finish(self) -> bytes:
        """The rest of the audio, after the last frame."""
        out = b""
        if self._flac is not None:
            decoded = await self._flac.finish()
            resampler = self._resampler()
            out = resampler.feed(decoded) if resampler and decoded else b""
        if self._pcm is not None:
            out += self._pcm.flush()
        return self._out(out)

    async def aclose(self) -> None:
        """Release decoder resources (a FLAC decoder holds a thread); idempotent."""
        if self._flac is not None:
            await self._flac.aclose()
