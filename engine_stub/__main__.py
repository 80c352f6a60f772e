"""Start engine_stub: `python -m engine_stub` (settings: ENGINE_STUB_* variables)."""

from __future__ import annotations

import asyncio
import logging
import sys

from engine_stub.config import Settings
from engine_stub.server import StubServer
from engine_stub.transcripts import TranscriptError, load_table
from services.common.logs import configure_logging
from services.common.settings import load_settings


def main() -> None:
    settings = load_settings(Settings)
    configure_logging("engine_stub", settings.log_level, settings.log_format)
    if settings.log_level != "DEBUG":
        # websockets logs every open and close; the session summary says it once.
        logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        table = load_table(settings.transcripts)
    except TranscriptError as exc:
        sys.stderr.write(f"invalid settings:\n  ENGINE_STUB_TRANSCRIPTS: {exc}\n")
        raise SystemExit(2) from None
    try:
        asyncio.run(StubServer(settings, table).run())
    except OSError as exc:
        sys.stderr.write(f"engine_stub: cannot listen on {settings.host}:{settings.port}: {exc}\n")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
