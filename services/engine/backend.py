"""What the WebSocket layer needs of a recogniser, whichever it is (pocketsphinx or Whisper)."""

from __future__ import annotations

from typing import Protocol

from services.engine.recognizer import Result


class SessionDecoding(Protocol):
    """One connection's recognition. `accept` answers one frame; `finish` eof or reset."""

    @property
    def label(self) -> str:
        """Where the session decodes, for its summary line."""
        ...

    async def accept(self, pcm: bytes) -> Result: ...

    async def finish(self, pcm: bytes, time_base: float | None = None) -> Result: ...

    async def aclose(self) -> None: ...


class Recognition(Protocol):
    def session(self, session_id: str) -> SessionDecoding: ...
