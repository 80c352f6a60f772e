"""Audio normalisation: whatever the client sends → 16 kHz mono s16le for the backend.

PCM (s16le, 8 to 48 kHz, mono or stereo) is down-mixed and resampled with soxr
(`services.common.audio.PcmResampler`); a sample split across frames is carried. FLAC is
decoded as a stream with pyflac, whose `StreamDecoder` runs one thread per decoder and
calls back from it. FLAC expands without bound (two minutes of silence fit in a few
kilobytes), so both sides of the decoder are bounded: its input queue (the session waits
for the decoder instead of queueing more), and its output — the decoder thread waits while
`MAX_PENDING_DECODED_BYTES` of decoded audio wait for the session, and the session passes
audio on to its `send` in chunks of at most `CHUNK_BYTES`. A stream that decodes to more
than the session's length (`max_seconds`) is refused with `AudioTooLong`. The decoder is
always finished — its thread joined — off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import pyflac

from services.common.audio import PCM_BYTES_PER_SECOND, SAMPLE_RATE, PcmResampler
from services.endpoint.errors import CLOSE_POLICY, CLOSE_UNSUPPORTED, SessionError
from services.endpoint.handshake import MAX_CHANNELS, MAX_RATE, MIN_RATE, AudioSpec

Send = Callable[[bytes], Awaitable[None]]

# Undecoded FLAC the session may hand the decoder thread before it waits for it.
MAX_PENDING_FLAC_BYTES = 256 * 1024
# Decoded audio the decoder thread may get ahead of the session before it waits.
MAX_PENDING_DECODED_BYTES = 256 * 1024
# The most decoded audio handed on at once (a whole number of 16-bit stereo frames).
CHUNK_BYTES = 64 * 1024
# Input after which a stream that has produced no audio at all is not FLAC.
FLAC_SYNC_LIMIT_BYTES = 256 * 1024
FLAC_WAIT_SECONDS = 10.0
# Audio (after normalisation) that counts as activity for the idle timer: 10 ms.
MIN_ACTIVITY_BYTES = PCM_BYTES_PER_SECOND // 100
# Audio one session may decode to, unless told otherwise (ENDPOINT_MAX_SESSION_SECONDS).
DEFAULT_MAX_SECONDS = 900.0

# pyflac logs every libFLAC error itself, from its thread and without the session id;
# the session reports the error to the client and in its summary line instead.
logging.getLogger("pyflac").setLevel(logging.CRITICAL)


class InvalidAudio(Exception):
    """The client's bytes are not audio of the declared content type."""


class AudioTooLong(Exception):
    """The audio decodes to more than one session may hold (a FLAC decompression bomb)."""


@contextlib.contextmanager
def audio_errors() -> Iterator[None]:
    """The normaliser's refusals of the client's audio, as session errors."""
    try:
        yield
    except InvalidAudio as exc:  # not audio of the declared content type
        raise SessionError(CLOSE_UNSUPPORTED, "invalid_audio", str(exc)) from None
    except AudioTooLong as exc:  # more audio than a session may hold (a FLAC bomb)
        raise SessionError(CLOSE_POLICY, "audio_too_long", str(exc)) from None


class FlacStream:
    """Streaming FLAC → interleaved s16le at the stream's own rate and channels."""

    def __init__(self, max_seconds: float) -> None:
        self._max_seconds = max_seconds
        self._cond = threading.Condition()
        self._blocks: deque[bytes] = deque()
        self._pending_bytes = 0
        self._format: tuple[int, int] | None = None
        self._error = ""
        self._too_long = False
        self._stopping = False
        self._fed = 0
        self._decoded_frames = 0
        self._finished = False
        self._loop = asyncio.get_running_loop()
        self._progress = asyncio.Event()
        self._decoder: Any = pyflac.StreamDecoder(write_callback=self._on_block)

    # Runs on the decoder's thread. It never raises: cffi would only print the exception.
    def _on_block(self, audio: np.ndarray, rate: int, channels: int, samples: int) -> None:
        with self._cond:
            if self._refused(rate, channels, samples):
                # pyflac's read callback aborts the stream when it sees an error.
                self._decoder._error = self._error or "decoded audio past the session limit"
            else:
                while self._pending_bytes >= MAX_PENDING_DECODED_BYTES and not self._stopping:
                    self._cond.wait()
                if not self._stopping:
                    block = np.ascontiguousarray(audio, dtype="<i2").tobytes()
                    self._blocks.append(block)
                    self._pending_bytes += len(block)
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            self._loop.call_soon_threadsafe(self._progress.set)

    def _refused(self, rate: int, channels: int, samples: int) -> bool:
        if self._stopping or self._error or self._too_long:
            return True
        if self._format is None:
            self._format = (rate, channels)
        if (rate, channels) != self._format:
            self._error = "the FLAC stream changed its rate or channels"
        elif not (MIN_RATE <= rate <= MAX_RATE and 1 <= channels <= MAX_CHANNELS):
            self._error = f"FLAC of {rate} Hz and {channels} channels is not supported"
        self._decoded_frames += samples
        if self._decoded_frames / rate > self._max_seconds:
            self._too_long = True
        return bool(self._error) or self._too_long

    @property
    def format(self) -> tuple[int, int] | None:
        with self._cond:
            return self._format

    def _raise_if_failed(self) -> None:
        if self._too_long:
            raise AudioTooLong(f"the FLAC stream decodes to more than {self._max_seconds:g} s")
        if self._error:
            raise InvalidAudio(self._error)

    def _take(self) -> bytes:
        """One decoded block, or b"" when none waits; wakes the decoder thread."""
        with self._cond:
            self._raise_if_failed()
            if not self._blocks:
                return b""
            block = self._blocks.popleft()
            self._pending_bytes -= len(block)
            self._cond.notify_all()
            return block

    async def _hand_on(self, send: Send) -> None:
        """Pass every decoded block that waits on to `send`, in chunks of CHUNK_BYTES."""
        while block := self._take():
            for offset in range(0, len(block), CHUNK_BYTES):
                await send(block[offset : offset + CHUNK_BYTES])

    def _pending_input(self) -> int:
        # pyflac keeps undecoded input in a deque that its read callback drains, under its lock.
        with self._decoder._lock:
            return sum(len(chunk) for chunk in self._decoder._buffer)

    async def _wait_progress(self) -> None:
        self._progress.clear()
        # Decoded blocks signal progress; libFLAC's errors and the thread's end do not,
        # hence the short wait.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.05):
                await self._progress.wait()

    async def feed(self, data: bytes, send: Send) -> None:
        self._fed += len(data)
        self._decoder.process(data)
        deadline = self._loop.time() + FLAC_WAIT_SECONDS
        while True:
            await self._hand_on(send)
            if self._pending_input() <= MAX_PENDING_FLAC_BYTES or self._decoder._error:
                break
            if self._loop.time() > deadline:
                raise InvalidAudio("the FLAC decoder made no progress")
            await self._wait_progress()
        with self._cond:
            self._raise_if_failed()
        if self._decoder._error:
            raise InvalidAudio(f"not a valid FLAC stream: {self._decoder._error}")
        if self._fed > FLAC_SYNC_LIMIT_BYTES and self.format is None:
            raise InvalidAudio("no FLAC audio found in the first bytes of the stream")

    async def finish(self, send: Send) -> None:
        """Decode what is left and end the decoder; raise InvalidAudio if it was not FLAC."""
        if self._finished:
            return
        self._finished = True
        # pyflac's finish() waits for its thread (it polls and joins): not on the loop. The
        # thread may wait for this side to take audio, so the two run side by side.
        closing = asyncio.ensure_future(asyncio.to_thread(self._decoder.finish))
        try:
            while not closing.done():
                await self._hand_on(send)
                await self._wait_progress()
            await self._hand_on(send)
            with self._cond:
                self._raise_if_failed()
            try:
                closing.result()
            except pyflac.DecoderProcessException as exc:
                raise InvalidAudio(f"not a valid FLAC stream: {exc}") from None
        finally:
            if not closing.done():
                self._stop_thread()
            with contextlib.suppress(pyflac.DecoderProcessException):
                await closing
        if self._fed and self.format is None:
            raise InvalidAudio("no FLAC audio found in the stream")

    def _stop_thread(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._decoder._done = True  # the read callback then ends the stream at once
        self._decoder._event.set()

    async def aclose(self) -> None:
        """End the decoder thread without decoding further (idempotent)."""
        self._stop_thread()
        if not self._finished:
            self._finished = True
            with contextlib.suppress(pyflac.DecoderProcessException):
                await asyncio.to_thread(self._decoder.finish)


class AudioNormaliser:
    """Fed the client's bytes as they come; hands normalised PCM to `send` as soon as it can."""

    def __init__(self, spec: AudioSpec, max_seconds: float = DEFAULT_MAX_SECONDS) -> None:
        self.spec = spec
        self.received_bytes = 0
        self.output_bytes = 0
        self._flac = FlacStream(max_seconds) if spec.encoding == "flac" else None
        self._pcm: PcmResampler | None = (
            None if self._flac else PcmResampler(spec.rate, SAMPLE_RATE, spec.channels)
        )

    def _resampler(self) -> PcmResampler | None:
        if self._pcm is None and self._flac is not None and self._flac.format is not None:
            rate, channels = self._flac.format
            self._pcm = PcmResampler(rate, SAMPLE_RATE, channels)
        return self._pcm

    async def _out(self, pcm: bytes, send: Send) -> None:
        self.output_bytes += len(pcm)
        for offset in range(0, len(pcm), CHUNK_BYTES):  # one message to the backend each
            await send(pcm[offset : offset + CHUNK_BYTES])

    async def _decoded(self, data: bytes, send: Send) -> None:
        resampler = self._resampler()
        if resampler is not None and data:
            await self._out(resampler.feed(data), send)

    async def feed(self, data: bytes, send: Send) -> None:
        """Normalise one frame of the client's bytes; `send` gets the PCM, in bounded chunks."""
        self.received_bytes += len(data)
        if self._flac is not None:
            await self._flac.feed(data, lambda decoded: self._decoded(decoded, send))
        else:
            await self._decoded(data, send)

    async def finish(self, send: Send) -> None:
        """The rest of the audio, after the last frame."""
        if self._flac is not None:
            await self._flac.finish(lambda decoded: self._decoded(decoded, send))
        if self._pcm is not None:
            await self._out(self._pcm.flush(), send)

    async def aclose(self) -> None:
        """Release decoder resources (a FLAC decoder holds a thread); idempotent."""
        if self._flac is not None:
            await self._flac.aclose()
