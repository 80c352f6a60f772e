"""The mimi result formats, without I/O: internal results → client JSON messages.

- `asr` → `asr#mimilvcsr`: each determined segment's words as it is determined
  (`recog-in-progress`), then every word in `recog-finished`.
- `nict-asr` v1 → `asr#nictlvcsr`: one `recog-finished` with a morpheme line per word,
  then `|||SENT-START-END||||` and `|||UTT-END||||`. Engines give no part of speech, so the
  POS fields are empty and the base form is the surface form.
- `nict-asr` v2 → `asr#nictlvcsr2`: temporary hypotheses (`determined: false`) at most
  every `temporary_interval` ms when `temporary=true`; determined segments as they come
  when `progressive=true`; `recog-finished` repeats the last determined segment (with
  `progressive=false` it carries all the text as one determined entry).
"""

from __future__ import annotations

from typing import Any

from services.common.pb import recognizer_pb2 as pb
from services.common.text import join_words
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
    fields = [word.text, word.pronunciation, word.text, "", "", "", "", ""]
    return {"result": "|".join(fields)}


SENT_END_LINE = {"result": "|||SENT-START-END||||"}
UTT_END_LINE = {"result": "|||UTT-END||||"}


def _v2_entry(text: str, words: list[str], determined: bool, time_ms: int) -> dict[str, Any]:
    return {"result": text, "words": words, "determined": determined, "time": time_ms}


class ResultFormatter:
    """Formats one session's results; `feed` returns the messages to send now."""

    def __init__(self, process: str, language: str, options: Options, session_id: str) -> None:
        self.language = language
        self.options = options
        self.session_id = session_id
        if process == "nict-asr":
            self.type = "asr#nictlvcsr2" if options.response_format == "v2" else "asr#nictlvcsr"
        else:
            self.type = "asr#mimilvcsr"
        self._last_segment: pb.Segment | None = None
        self._last_temporary_ms: float | None = None

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
        words = [w.text for w in partial.words] or partial.text.split()
        entry = _v2_entry(partial.text, words, False, partial.start_ms)
        return [self.message(IN_PROGRESS, [entry])]

    def _segment(self, segment: pb.Segment) -> list[Message]:
        if not segment.text and not segment.words:
            return []
        self._last_segment = segment
        if self.type == "asr#mimilvcsr":
            return [self.message(IN_PROGRESS, [_asr_word(w) for w in segment.words])]
        if self.type == "asr#nictlvcsr2" and self.options.progressive:
            entry = _v2_entry(segment.text, [w.text for w in segment.words], True, segment.start_ms)
            return [self.message(IN_PROGRESS, [entry])]
        return []

    def _finished(self, finished: pb.Finished) -> Message:
        if self.type == "asr#mimilvcsr":
            return self.message(FINISHED, [_asr_word(w) for w in finished.words])
        if self.type == "asr#nictlvcsr":
            lines = [_morpheme_line(w) for w in finished.words]
            return self.message(FINISHED, [*lines, SENT_END_LINE, UTT_END_LINE])
        if self.options.progressive:
            last = self._last_segment
            if last is None:
                return self.message(FINISHED, [])
            entry = _v2_entry(last.text, [w.text for w in last.words], True, last.start_ms)
            return self.message(FINISHED, [entry])
        text = finished.text or join_words(self.language, [w.text for w in finished.words])
        entry = _v2_entry(text, [w.text for w in finished.words], True, 0)
        return self.message(FINISHED, [entry])

    def error(self, code: str, message: str, retryable: bool) -> Message:
        return {
            "type": "error",
            "session_id": self.session_id,
            "status": "error",
            "error": {"code": code, "message": message, "retryable": retryable},
        }
