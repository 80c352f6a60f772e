"""Audio normalisation: whatever the client sends → 16 kHz mono s16le for the backend."""

from __future__ import annotations

from services.common.audio import PcmResampler
from services.endpoint.handshake import AudioSpec

TARGET_RATE = 16000


class AudioNormaliser:
    """Fed the client's bytes as they come; returns normalised PCM as soon as it can."""

    def __init__(self, spec: AudioSpec) -> None:
        self.spec = spec
        self.received_bytes = 0
        self._pcm = PcmResampler(spec.rate, TARGET_RATE, spec.channels)

    @property
    def passthrough(self) -> bool:
        return self._pcm.passthrough

    def feed(self, data: bytes) -> bytes:
        self.received_bytes += len(data)
        return self._pcm.feed(data)

    def finish(self) -> bytes:
        return self._pcm.flush()

    def close(self) -> None:
        """Release decoder resources (a FLAC decoder holds a thread)."""
