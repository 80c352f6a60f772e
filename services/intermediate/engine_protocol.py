"""The engine protocol, vosk-server's (docs/architecture.md, "Engine protocol"), no I/O.

`EngineTranslator` is fed the engine's text replies and returns internal responses:
partials, determined segments (times converted from seconds of the connection's audio to
milliseconds) and, at the end, the finished result that gathers every segment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from services.common.pb import recognizer_pb2 as pb
from services.common.text import join_words, normalise_text
from services.intermediate.errors import EngineProtocolError


def _seconds_to_ms(value: object) -> int:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise EngineProtocolError(f"bad time in engine reply: {value!r}")
    return round(float(value) * 1000)


def _parse_words(result: object) -> list[pb.Word]:
    if result is None:
        return []
    if not isinstance(result, list):
        raise EngineProtocolError("engine reply 'result' is not a list")
    words = []
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("word"), str):
            raise EngineProtocolError(f"bad word in engine reply: {item!r}")
        conf = item.get("conf", 1.0)
        pronunciation = item.get("pronunciation", "")
        words.append(
            pb.Word(
                text=item["word"],
                pronunciation=pronunciation if isinstance(pronunciation, str) else "",
                start_ms=_seconds_to_ms(item.get("start", 0)),
                end_ms=_seconds_to_ms(item.get("end", 0)),
                confidence=float(conf) if isinstance(conf, int | float) else 0.0,
            )
        )
    return words


@dataclass
class EngineTranslator:
    """Turns one session's engine replies into internal responses."""

    language: str
    segments: list[pb.Segment] = field(default_factory=list)

    @property
    def determined_until_ms(self) -> int:
        return self.segments[-1].end_ms if self.segments else 0

    def feed(self, raw: str | bytes) -> pb.RecognizeResponse:
        """Translate one engine reply; raises EngineProtocolError for anything else."""
        if isinstance(raw, bytes):
            raise EngineProtocolError("engine sent a binary frame")
        try:
            message = json.loads(raw)
        except ValueError as exc:
            raise EngineProtocolError(f"engine sent non-JSON text: {raw[:80]!r}") from exc
        if not isinstance(message, dict):
            raise EngineProtocolError(f"engine sent a JSON {type(message).__name__}")
        if "partial" in message:
            text = message["partial"]
            if not isinstance(text, str):
                raise EngineProtocolError("engine partial is not a string")
            return pb.RecognizeResponse(
                partial=pb.Partial(
                    text=normalise_text(self.language, text),
                    words=_parse_words(message.get("partial_result")),
                    start_ms=self.determined_until_ms,
                )
            )
        if "text" in message:
            return pb.RecognizeResponse(segment=self._segment(message))
        raise EngineProtocolError(f"engine reply has neither partial nor text: {raw[:80]!r}")

    def _segment(self, message: dict[str, object]) -> pb.Segment:
        text = message["text"]
        if not isinstance(text, str):
            raise EngineProtocolError("engine text is not a string")
        words = _parse_words(message.get("result"))
        # Segments tile the audio: one starts where the previous one ended (as mimi's v2
        # "time" does), not at its first word.
        start = self.determined_until_ms
        end = max(start, words[-1].end_ms) if words else start
        segment = pb.Segment(
            text=normalise_text(self.language, text), words=words, start_ms=start, end_ms=end
        )
        if segment.text or segment.words:
            self.segments.append(segment)
        return segment

    def finished(self) -> pb.RecognizeResponse:
        words = [w for s in self.segments for w in s.words]
        text = join_words(self.language, [s.text for s in self.segments])
        return pb.RecognizeResponse(finished=pb.Finished(text=text, words=words))
