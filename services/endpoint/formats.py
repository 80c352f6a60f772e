"""The mimi result formats, without I/O: internal results → client JSON messages.

- `asr` → `asr#mimilvcsr`: each determined segment's words as it is determined
  (`recog-in-progress`), then every word in `recog-finished`.
- `nict-asr` v1 → `asr#nictlvcsr`: one `recog-finished` with a morpheme line per word,
  then `|||SENT-START-END||||` and `|||UTT-END||||`.
- `nict-asr` v2 → `asr#nictlvcsr2`: temporary hypotheses (`determined: false`) at most
  every `temporary_interval` ms when `temporary=true`; determined segments as they come
  when `progressive=true`; `recog-finished` repeats the last determined segment (with
  `progressive=false` it carries all the text as one determined entry).

Japanese text is analysed segment by segment (services/endpoint/morphology.py): v1 lines
carry reading, base form, part of speech and conjugation; v2 `words` are the morphemes;
`asr` words are the morphemes with katakana pronunciations unless the engine gave
pronunciations of its own.
Other languages keep the engine's words; their v1 lines repeat the surface as base form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.common.pb import recognizer_pb2 as pb
from services.common.text import join_words
from services.endpoint import morphology
from services.endpoint.handshake import Options

IN_PROGRESS = "recog-in-progress"
FINISHED = "recog-finished"

Message = dict[str, Any]


def _asr_word(word: pb.Word) -> dict[str, Any]:
    return {
        "result": word.text,
        "pronunciation": word.pronunciation,
        "time": [word.start_ms, word.end_ms],
    }


def _morpheme_line(word: pb.Word) -> dict[str, str]:
    """A v1 line for a word of a language the analyser does not know."""
    fields = [word.text, word.pronunciation, word.text, "", "", "", "", ""]
    return {"result": "|".join(fields)}


SENT_END_LINE = {"result": "|||SENT-START-END||||"}
UTT_END_LINE = {"result": "|||UTT-END||||"}
END_LINES = (SENT_END_LINE, UTT_END_LINE)


def _v2_entry(text: str, words: list[str], determined: bool, time_ms: int) -> dict[str, Any]:
    return {"result": text, "words": words, "determined": determined, "time": time_ms}


class ResultFormatter:
    """Formats one session's results; `feed` returns the messages to send now."""

    def __init__(self, process: str, language: str, options: Options, session_id: str) -> None:
        self.language = language
        self.analysed = morphology.is_analysed(language)
        self.options = options
        self.session_id = session_id
        if process == "nict-asr":
            self.type = "asr#nictlvcsr2" if options.response_format == "v2" else "asr#nictlvcsr"
        else:
            self.type = "asr#mimilvcsr"
        self._last_segment: pb.Segment | None = None
        self._last_temporary_ms: float | None = None
        # Japanese is analysed segment by segment (a segment is one utterance, so no single
        # analysis stalls the event loop; a 15-minute final text at once took 45 ms). The
        # engine words of the segments so far, and what they gave: the asr words sent and
        # the v1 lines; recog-finished repeats them when it covers the same words.
        self._segment_words: list[pb.Word] = []
        self._asr_sent: list[dict[str, Any]] = []
        self._v1_lines: list[dict[str, str]] = []

    def message(self, status: str, response: list[Any]) -> Message:
        return {
            "type": self.type,
            "session_id": self.session_id,
            "status": status,
            "response": response,
        }

    def feed(self, reply: pb.RecognizeResponse, now_ms: float) -> list[Message]:
        kind = reply.WhichOneof("response")
        if kind == "partial":
            return self._partial(reply.partial, now_ms)
        if kind == "segment":
            return self._segment(reply.segment)
        if kind == "finished":
            return [self._finished(reply.finished)]
        return []

    def _partial(self, partial: pb.Partial, now_ms: float) -> list[Message]:
        if self.type != "asr#nictlvcsr2" or not self.options.temporary or not partial.text:
            return []
        last = self._last_temporary_ms
        if last is not None and now_ms - last < self.options.temporary_interval_ms:
            return []
        self._last_temporary_ms = now_ms
        words = self._v2_words(partial.text, partial.words) or partial.text.split()
        entry = _v2_entry(partial.text, words, False, partial.start_ms)
        return [self.message(IN_PROGRESS, [entry])]

    def _segment(self, segment: pb.Segment) -> list[Message]:
        if not segment.text and not segment.words:
            return []
        self._last_segment = segment
        self._segment_words.extend(segment.words)
        if self.type == "asr#nictlvcsr":
            self._v1_lines.extend(self._nict_lines(segment.text, segment.words))
        if self.type == "asr#mimilvcsr":
            words = self._asr_words(segment.text, segment.words, segment.start_ms, segment.end_ms)
            self._asr_sent.extend(words)
            return [self.message(IN_PROGRESS, words)]
        if self.type == "asr#nictlvcsr2" and self.options.progressive:
            return [self.message(IN_PROGRESS, [self._v2_segment(segment)])]
        return []

    def _finished(self, finished: pb.Finished) -> Message:
        text = finished.text or join_words(self.language, [w.text for w in finished.words])
        as_sent = bool(self._segment_words) and list(finished.words) == self._segment_words
        if self.type == "asr#mimilvcsr":
            if as_sent:
                return self.message(FINISHED, list(self._asr_sent))
            end_ms = finished.words[-1].end_ms if finished.words else 0
            return self.message(FINISHED, self._asr_words(text, finished.words, 0, end_ms))
        if self.type == "asr#nictlvcsr":
            lines = self._v1_lines if as_sent else self._nict_lines(text, finished.words)
            return self.message(FINISHED, [*lines, *END_LINES])
        if self.options.progressive:
            last = self._last_segment
            if last is None:
                return self.message(FINISHED, [])
            return self.message(FINISHED, [self._v2_segment(last)])
        entry = _v2_entry(text, self._v2_words(text, finished.words), True, 0)
        return self.message(FINISHED, [entry])

    def _v2_segment(self, segment: pb.Segment) -> dict[str, Any]:
        words = self._v2_words(segment.text, segment.words)
        return _v2_entry(segment.text, words, True, segment.start_ms)

    def _v2_words(self, text: str, words: Sequence[pb.Word]) -> list[str]:
        if self.analysed:
            return [m.surface for m in morphology.words_of(text)]
        return [w.text for w in words]

    def _asr_words(
        self, text: str, words: Sequence[pb.Word], start_ms: int, end_ms: int
    ) -> list[dict[str, Any]]:
        # An engine that gives pronunciations (engine_stub's transcripts, vosk's Japanese
        # models do not) knows its words best; otherwise the analyser's morphemes.
        if not self.analysed or (words and all(w.pronunciation for w in words)):
            return [_asr_word(w) for w in words]
        return morphology.timed_words(text, list(words), start_ms, end_ms)

    def _nict_lines(self, text: str, words: Sequence[pb.Word]) -> list[dict[str, str]]:
        if self.analysed:
            return [{"result": m.nict_line()} for m in morphology.words_of(text)]
        return [_morpheme_line(w) for w in words]

    def error(self, code: str, message: str, retryable: bool) -> Message:
        return {
            "type": "error",
            "session_id": self.session_id,
            "status": "error",
            "error": {"code": code, "message": message, "retryable": retryable},
        }
