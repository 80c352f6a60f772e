"""The engine protocol of one connection, without I/O (docs/engines.md, vosk-server's
`websocket/asr_server.py`).

`EngineSession` is fed the connection's messages. Text is a config (checked always, taken
only before the first audio, as vosk-server builds its recogniser on the first audio frame;
a later valid one is ignored), the exact bytes `{"eof" : 1}` (final segment, then close)
or `{"reset" : 1}` (final segment, connection stays); anything else is a `ProtocolError`
(close 1011). Audio is cut into whole samples — an odd last byte is carried to the next frame,
where vosk-server would drop it and shift every later sample — and resampled to the model's
rate when the client's config asked for another (both by `services.common.audio`). `reply`
renders a result as vosk-server does.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from typing import Any

from services.common.audio import BYTES_PER_SAMPLE, PcmResampler
from services.engine.errors import ProtocolError
from services.engine.recognizer import Partial, Result

log = logging.getLogger(__name__)

EOF_MESSAGE = '{"eof" : 1}'
RESET_MESSAGE = '{"reset" : 1}'
# Client rates the engine resamples from; others are refused (close 1011).
MIN_RATE, MAX_RATE = 8000, 192000


class Text(enum.Enum):
    CONFIG = "config"  # no reply
    EOF = "eof"  # final segment, then close 1000
    RESET = "reset"  # final segment, keep the connection


class EngineSession:
    def __init__(self, model_rate: int) -> None:
        self.model_rate = model_rate
        self.sample_rate = float(model_rate)
        self.words = True
        self.bytes_received = 0
        self._resampler: PcmResampler | None = None  # made by the first audio

    @property
    def started(self) -> bool:
        """Audio has arrived: the config is final."""
        return self._resampler is not None

    @property
    def audio_seconds(self) -> float:
        return self.bytes_received / BYTES_PER_SAMPLE / self.sample_rate

    def on_text(self, text: str) -> Text:
        if text == EOF_MESSAGE:
            return Text.EOF
        if text == RESET_MESSAGE:
            return Text.RESET
        try:
            message = json.loads(text)
        except ValueError:
            raise ProtocolError("text frame is not JSON") from None
        if not isinstance(message, dict) or not isinstance(message.get("config"), dict):
            raise ProtocolError("text frame is neither a config nor the exact eof message")
        # Checked always (vosk-server parses every config), applied only before audio.
        sample_rate, words = self._parse_config(message["config"])
        if not self.started:
            self.sample_rate = sample_rate
            self.words = words
        return Text.CONFIG

    def _parse_config(self, config: dict[str, Any]) -> tuple[float, bool]:
        ignored = sorted(set(config) - {"sample_rate", "words"})
        if ignored:
            # Never load anything a client names (vosk-server's `model` loads any path).
            log.info("ignoring config keys", extra={"keys": ignored})
        sample_rate, words = self.sample_rate, self.words
        if "sample_rate" in config:
            rate = config["sample_rate"]
            if isinstance(rate, bool) or not isinstance(rate, int | float | str):
                raise ProtocolError(f"bad sample_rate {rate!r}")
            try:
                sample_rate = float(rate)
            except ValueError:
                raise ProtocolError(f"bad sample_rate {rate!r}") from None
            if not (math.isfinite(sample_rate) and MIN_RATE <= sample_rate <= MAX_RATE):
                raise ProtocolError(f"sample_rate {rate!r} outside {MIN_RATE}..{MAX_RATE}")
        if "words" in config:
            words = bool(config["words"])
        return sample_rate, words

    def on_audio(self, data: bytes) -> bytes:
        """Whole samples at the model's rate (possibly empty) for one binary frame."""
        if self._resampler is None:
            # Whole Hz: soxr would take a fraction, but no client sends one on purpose.
            self._resampler = PcmResampler(round(self.sample_rate), self.model_rate)
        self.bytes_received += len(data)
        return self._resampler.feed(data)

    def flush(self) -> bytes:
        """The resampler's tail at the end of the audio (a dangling odd byte is dropped)."""
        return self._resampler.flush() if self._resampler is not None else b""

    def reply(self, result: Result) -> str:
        """The JSON text frame answering one audio frame, eof or reset."""
        if isinstance(result, Partial):
            return json.dumps({"partial": result.text})
        body: dict[str, Any] = {}
        if self.words and result.words:
            body["result"] = [
                {"conf": w.conf, "end": w.end, "start": w.start, "word": w.word}
                for w in result.words
            ]
        body["text"] = result.text
        return json.dumps(body)
