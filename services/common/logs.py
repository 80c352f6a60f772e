"""Logging: JSON lines (containers) or readable lines (terminal), session id on every line.

The session id lives in a context variable, so every log call made while serving a
session carries it without passing it around. `summary()` writes the one line per session
that operators search for.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

from services.common.settings import LogFormat

session_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("session_id", default="")

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            "session_id": getattr(record, "session_id", "") or session_id_var.get(),
        }
        entry.update(_extra_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        session = getattr(record, "session_id", "") or session_id_var.get()
        extras = " ".join(f"{k}={v}" for k, v in _extra_fields(record).items())
        line = (
            f"{time.strftime('%H:%M:%S', time.localtime(record.created))} "
            f"{record.levelname:<7} {self.service} "
            f"{'[' + session + '] ' if session else ''}{record.getMessage()}"
            f"{' ' + extras if extras else ''}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(service: str, level: str = "INFO", fmt: LogFormat = "auto") -> None:
    """Send this process's logs to stdout in the chosen format."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service) if use_json else ConsoleFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Access logs would repeat what the session summary says, without the session id.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def summary(logger: logging.Logger, **fields: Any) -> None:
    """The one summary line of a session in this tier."""
    logger.info("session summary", extra={"summary": True, **fields})
