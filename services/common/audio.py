"""Audio helpers shared by the tiers: whole-sample framing and sample-rate conversion.

Everything that crosses an internal hop is 16-bit little-endian PCM. A frame boundary may
fall inside a sample (clients split bytes however they like); vosk-server silently drops
an odd last byte and shifts every later sample, so the odd byte is carried instead.
"""

from __future__ import annotations

import numpy as np
import soxr

BYTES_PER_SAMPLE = 2
# The rate of every internal hop and of the engines' models (16 kHz mono s16le).
SAMPLE_RATE = 16000
BYTES_PER_SECOND = SAMPLE_RATE * BYTES_PER_SAMPLE


class SampleFramer:
    """Cuts a byte stream into whole frames of `frame_bytes`, carrying the remainder."""

    def __init__(self, frame_bytes: int = 2) -> None:
        if frame_bytes % BYTES_PER_SAMPLE:
            raise ValueError("frame_bytes must be a whole number of 16-bit samples")
        self._frame_bytes = frame_bytes
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        """Return the largest whole-frame prefix of what has arrived; keep the remainder."""
        data = self._pending + data if self._pending else data
        usable = len(data) - len(data) % self._frame_bytes
        self._pending = data[usable:]
        return data[:usable]

    @property
    def pending(self) -> int:
        return len(self._pending)


class PcmResampler:
    """Streaming s16le resampling and down-mixing to mono with soxr (no hand-written DSP)."""

    def __init__(self, in_rate: int, out_rate: int, channels: int = 1) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.channels = channels
        self._framer = SampleFramer(BYTES_PER_SAMPLE * channels)
        self._stream = (
            # float32, not int16: soxr dithers integer output, so the same audio would not
            # resample to the same bytes twice.
            soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
            if in_rate != out_rate
            else None
        )

    @property
    def passthrough(self) -> bool:
        return self._stream is None and self.channels == 1

    def feed(self, data: bytes, last: bool = False) -> bytes:
        whole = self._framer.feed(data)
        if self.passthrough:
            return whole
        samples = np.frombuffer(whole, dtype="<i2")
        if self.channels > 1:
            frames = samples.reshape(-1, self.channels).astype(np.int32)
            samples = (frames.sum(axis=1) // self.channels).astype(np.int16)
        if self._stream is None:
            return samples.astype("<i2").tobytes()
        out = np.asarray(self._stream.resample_chunk(samples.astype(np.float32), last=last))
        pcm: bytes = np.clip(np.rint(out), -32768, 32767).astype("<i2").tobytes()
        return pcm

    def flush(self) -> bytes:
        return self.feed(b"", last=True) if self._stream is not None else b""
