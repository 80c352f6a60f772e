"""Log filters of the endpoint: tokens never reach a log line, and one uvicorn false alarm.

uvicorn logs each WebSocket request as `"WebSocket /?…" <status>` with the query string, and
browsers send their token there (`access-token=`): the value is redacted before any handler
sees the record.
"""

from __future__ import annotations

import logging
import re

_TOKEN_IN_QUERY = re.compile(r"(access-token=)[^&\s\"']*", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    return _TOKEN_IN_QUERY.sub(r"\g<1>" + REDACTED, text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class DenialNoise(logging.Filter):
    """uvicorn 0.54's sans-I/O WebSocket protocol logs an error after every denial response
    (a refusal sent with `send_denial_response`), although the response went out whole."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


def install() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(RedactTokens())
    logging.getLogger("uvicorn.error").addFilter(DenialNoise())
