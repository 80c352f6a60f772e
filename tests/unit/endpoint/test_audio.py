"""Audio normalisation without sockets: PCM and FLAC at any rate → 16 kHz mono s16le."""

from __future__ import annotations

import io
import threading
from collections.abc import Awaitable, Callable

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st

from services.endpoint.audio import AudioNormaliser, InvalidAudio
from services.endpoint.handshake import AudioSpec


async def fed(normaliser: AudioNormaliser, data: bytes) -> bytes:
    """What `feed` hands on for `data`, joined."""
    out = bytearray()
    await normaliser.feed(data, _appending_to(out))
    return bytes(out)


async def finished(normaliser: AudioNormaliser) -> bytes:
    """What `finish` hands on, joined."""
    out = bytearray()
    await normaliser.finish(_appending_to(out))
    return bytes(out)


def _appending_to(out: bytearray) -> Callable[[bytes], Awaitable[None]]:
    async def send(pcm: bytes) -> None:
        out.extend(pcm)

    return send


def tone(freq: float, rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = (np.sin(2 * np.pi * freq * t) * 12000).astype(np.int16)
    return np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono


def peak_hz(pcm: bytes, rate: int = 16000) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def flac(audio: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


async def normalise(spec: AudioSpec, data: bytes, frame: int) -> bytes:
    normaliser = AudioNormaliser(spec)
    try:
        out = b""
        for offset in range(0, len(data), frame):
            out += await fed(normaliser, data[offset : offset + frame])
        return out + await finished(normaliser)
    finally:
        await normaliser.aclose()


@pytest.mark.parametrize(
    ("rate", "channels"), [(8000, 1), (11025, 2), (22050, 1), (44100, 2), (48000, 2)]
)
async def test_pcm_tone_arrives_as_the_same_tone_at_16k_mono(rate: int, channels: int) -> None:
    """A 440 Hz sine at any rate, mono or stereo, leaves as 440 Hz at 16 kHz mono."""
    audio = tone(440, rate, 1.0, channels).astype("<i2").tobytes()
    out = await normalise(AudioSpec("pcm", rate, channels), audio, 2047)
    assert len(out) % 2 == 0
    assert abs(len(out) / 2 - 16000) <= 16  # one second, within a millisecond
    assert abs(peak_hz(out) - 440) <= 2


async def test_16k_mono_passes_through_byte_for_byte() -> None:
    """16 kHz mono PCM is forwarded unchanged, an odd byte carried to the next frame."""
    audio = np.random.default_rng(3).bytes(32001 * 2)
    normaliser = AudioNormaliser(AudioSpec())
    first = await fed(normaliser, audio[:1001])
    assert len(first) == 1000
    rest = await fed(normaliser, audio[1001:])
    assert first + rest + await finished(normaliser) == audio


async def test_stereo_sample_split_across_frames_is_not_lost() -> None:
    """A stereo sample split over three frames is down-mixed whole, in order."""
    left = np.array([1000, 2000, 3000], dtype="<i2")
    right = np.array([3000, 4000, 5000], dtype="<i2")
    data = np.column_stack([left, right]).astype("<i2").tobytes()
    normaliser = AudioNormaliser(AudioSpec("pcm", 16000, 2))
    out = b"".join([await fed(normaliser, data[i : i + 3]) for i in range(0, len(data), 3)])
    assert np.frombuffer(out, dtype="<i2").tolist() == [2000, 3000, 4000]


async def test_flac_mono_16k_decodes_exactly() -> None:
    """16 kHz mono FLAC decodes to exactly the PCM it was made from, whatever the framing."""
    pcm = (np.random.default_rng(1).standard_normal(16000 * 2) * 3000).astype(np.int16)
    out = await normalise(AudioSpec("flac"), flac(pcm, 16000), 3001)
    assert out == pcm.astype("<i2").tobytes()


async def test_flac_stereo_44k_tone_arrives_at_16k_mono() -> None:
    """FLAC's own rate and channels are used: a 44.1 kHz stereo 440 Hz tone leaves as 440 Hz."""
    data = flac(tone(440, 44100, 1.0, 2), 44100)
    out = await normalise(AudioSpec("flac", 16000, 1), data, 4096)
    assert abs(len(out) / 2 - 16000) <= 16
    assert abs(peak_hz(out) - 440) <= 2


async def test_garbage_declared_as_flac_is_invalid_audio() -> None:
    """Bytes that are not FLAC raise InvalidAudio at the latest when the audio ends."""
    with pytest.raises(InvalidAudio):
        await normalise(AudioSpec("flac"), np.random.default_rng(2).bytes(50000), 4096)


async def test_flac_decoder_threads_end_when_sessions_end() -> None:
    """Fifty abandoned FLAC decoders leave no thread behind."""

    def decoder_threads() -> int:  # pyflac names none; its target is `_process`
        return sum("_process" in t.name for t in threading.enumerate())

    before = decoder_threads()
    data = flac(tone(440, 16000, 0.5, 1), 16000)
    for _ in range(50):
        normaliser = AudioNormaliser(AudioSpec("flac"))
        await fed(normaliser, data[:1000])
        await normaliser.aclose()
        await normaliser.aclose()  # idempotent
    assert decoder_threads() == before


async def test_flac_backlog_waits_for_the_decoder() -> None:
    """A FLAC chunk far above the decoder's input bound is decoded whole, not queued blindly."""
    pcm = (np.random.default_rng(7).standard_normal(16000 * 20) * 8000).astype(np.int16)
    data = flac(pcm, 16000)
    assert len(data) > 2 * 256 * 1024
    out = await normalise(AudioSpec("flac"), data, len(data))
    assert out == pcm.astype("<i2").tobytes()


async def test_garbage_flac_in_one_large_chunk_is_invalid_audio() -> None:
    """Half a MiB of garbage in one frame is InvalidAudio, not a hang or a timeout."""
    with pytest.raises(InvalidAudio):
        await normalise(AudioSpec("flac"), np.random.default_rng(8).bytes(512 * 1024), 512 * 1024)


@given(
    st.binary(max_size=4000),
    st.lists(st.integers(1, 997), max_size=20),
    st.sampled_from([1, 2]),
)
async def test_any_framing_of_16k_pcm_gives_the_same_audio(
    data: bytes, cuts: list[int], channels: int
) -> None:
    """However 16 kHz PCM is cut into frames, the same whole samples leave, in order."""
    whole = await normalise(AudioSpec("pcm", 16000, channels), data, max(len(data), 1))
    normaliser = AudioNormaliser(AudioSpec("pcm", 16000, channels))
    out, offset = b"", 0
    for cut in [*cuts, len(data)]:
        out += await fed(normaliser, data[offset : offset + cut])
        offset += cut
    out += await finished(normaliser)
    assert out == whole
    assert len(out) == (len(data) // (2 * channels)) * 2
