"""Misbehaviour on purpose, as a pure decision: what to do with the next message.

Every fault counts audio frames: the first N audio frames of a connection are answered
normally, and the fault applies from then on (to later audio frames and to eof alike).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from engine_stub.config import Settings


class Action(enum.Enum):
    REPLY = "reply"
    GARBAGE = "garbage"  # reply with text that is not JSON
    DROP = "drop"  # a stuck decode: no reply, the connection stays (pings still answered)


@dataclass(frozen=True)
class Faults:
    close_after_frames: int | None = None
    hang_after_frames: int | None = None
    garbage_after_frames: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Faults:
        return cls(
            settings.close_after_frames,
            settings.hang_after_frames,
            settings.garbage_after_frames,
        )

    def action(self, frames_before: int) -> Action:
        """What to do with a message that arrives after `frames_before` audio frames."""
        if self.hang_after_frames is not None and frames_before >= self.hang_after_frames:
            return Action.DROP
        if self.garbage_after_frames is not None and frames_before >= self.garbage_after_frames:
            return Action.GARBAGE
        return Action.REPLY

    def close_now(self, frames: int) -> bool:
        """Whether to close the connection once `frames` audio frames were handled."""
        return self.close_after_frames is not None and frames >= self.close_after_frames


def garbage(frames: int) -> str:
    """A text reply that no JSON parser accepts."""
    return f"}}garbage after {frames} frames{{"
