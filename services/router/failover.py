"""What failover needs, without I/O: the bounded audio log and the result filter.

`AudioLog` keeps a session's audio for replay, up to a bound. `ResultFilter` sits between
the backends and the client: it passes results through until a failover, then, while the
replacement backend recognises the replayed audio, passes on only what the client has not
seen yet:

- a determined segment that ends where the client's text already ends (or earlier) is
  dropped; one that reaches past it is passed on, without the words the client already has
  (when the replacement engine cut its segments differently);
- segments without word times (an engine that gives none) are matched by count instead;
- partials are dropped until the replacement has caught up with the client;
- `finished` is rebuilt from the segments the client actually received, so that the final
  text always agrees with the progressive one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.pb import recognizer_pb2 as pb
from services.common.text import join_words


@dataclass
class AudioLog:
    """The session's audio so far, for replay; gives up past its bound."""

    limit: int
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    overflowed: bool = False

    def add(self, chunk: bytes) -> None:
        if self.overflowed:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            self.overflowed = True
            self.chunks.clear()  # no failover any more: free the memory at once
        else:
            self.chunks.append(chunk)


@dataclass
class ResultFilter:
    language: str
    sent: list[pb.Segment] = field(default_factory=list)  # what the client has
    failed_over: bool = False
    _replayed: int = 0  # segments seen from the current backend since the last failover

    @property
    def sent_until_ms(self) -> int:
        return max((s.end_ms for s in self.sent if s.words), default=0)

    def failover(self) -> None:
        """A new backend is about to get the audio from the start."""
        self.failed_over = True
        self._replayed = 0

    def feed(self, reply: pb.RecognizeResponse) -> pb.RecognizeResponse | None:
        """The reply to pass on to the client, or None to drop it."""
        kind = reply.WhichOneof("response")
        if kind == "accepted":
            return None
        if kind == "segment":
            segment = self._segment(reply.segment)
            if segment is None:
                return None
            self.sent.append(segment)
            return pb.RecognizeResponse(segment=segment)
        if kind == "partial":
            if self.failed_over and self._behind(reply.partial.start_ms):
                return None
            return reply
        if kind == "finished" and self.failed_over:
            words = [w for s in self.sent for w in s.words]
            text = join_words(self.language, [s.text for s in self.sent])
            return pb.RecognizeResponse(finished=pb.Finished(text=text, words=words))
        return reply

    def _behind(self, start_ms: int) -> bool:
        if self.sent and not self.sent[-1].words:
            return self._replayed < len(self.sent)
        return start_ms < self.sent_until_ms

    def _segment(self, segment: pb.Segment) -> pb.Segment | None:
        if not self.failed_over:
            return segment
        self._replayed += 1
        if not segment.words:
            # No times to compare: trust that the engine cuts the same audio the same way.
            return segment if self._replayed > len(self.sent) else None
        until = self.sent_until_ms
        if segment.end_ms <= until:
            return None  # the client has text for all of this audio
        if segment.start_ms >= until:
            return segment
        words = [w for w in segment.words if w.end_ms > until]
        text = (
            segment.text
            if len(words) == len(segment.words)
            else join_words(self.language, [w.text for w in words])
        )
        return pb.Segment(text=text, words=words, start_ms=until, end_ms=segment.end_ms)
