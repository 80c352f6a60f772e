"""FLAC expands without bound: decoded audio is bounded per call and per session (issue 13,
item 2). Two minutes of digital silence at 48 kHz stereo encode to a couple of kilobytes."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from services.endpoint.audio import AudioNormaliser, AudioTooLong
from services.endpoint.handshake import AudioSpec

STEREO_48K = AudioSpec("flac", 48000, 2)
# Far below gRPC's 4 MiB message limit; what one chunk sent to the backend may hold.
CHUNK_LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def two_minutes_of_silence() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((48000 * 120, 2), np.int16), 48000, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


class Sink:
    """The session's `send`: keeps the chunks it is handed."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def __call__(self, pcm: bytes) -> None:
        self.chunks.append(pcm)


async def test_honest_long_silence_streams_on_in_bounded_chunks(
    two_minutes_of_silence: bytes,
) -> None:
    """Two minutes of silence in one FLAC frame all arrive, in chunks well under 4 MiB."""
    assert len(two_minutes_of_silence) < 65536  # one WebSocket frame: a 170-fold expansion
    normaliser = AudioNormaliser(STEREO_48K)
    try:
        sink = Sink()
        await normaliser.feed(two_minutes_of_silence, sink)
        await normaliser.finish(sink)
    finally:
        await normaliser.aclose()
    assert max(len(chunk) for chunk in sink.chunks) <= CHUNK_LIMIT
    assert abs(sum(len(chunk) for chunk in sink.chunks) - 120 * 32000) <= 64


async def test_a_stream_decoding_past_the_session_limit_is_refused_in_bounded_memory(
    two_minutes_of_silence: bytes,
) -> None:
    """A FLAC stream that decodes to more audio than a session may hold is an error, and
    memory stays bounded until it is found (decoding waits for the session to take audio)."""
    normaliser = AudioNormaliser(STEREO_48K, max_seconds=60)
    tracemalloc.start()
    try:
        await normaliser.feed(two_minutes_of_silence, Sink())
        with pytest.raises(AudioTooLong, match="60 s"):
            await normaliser.finish(Sink())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await normaliser.aclose()
    assert peak < 8 * 1024 * 1024  # 60 s of 48 kHz stereo alone would be 11 MiB
