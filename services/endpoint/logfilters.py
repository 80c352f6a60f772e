"""Log filters of the endpoint: tokens never reach a log line, and one uvicorn false alarm.

uvicorn logs each WebSocket request as `"WebSocket /?…" <status>` with the query string, and
browsers send their token there (`access-token=`): the value is redacted before any handler
sees the record. Names are compared the way Starlette reads them (percent- and `+`-decoded,
`&`-separated), so `access%2Dtoken=` is redacted too; the comparison ignores case.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

from services.endpoint.handshake import TOKEN_QUERY_PARAMETER

_QUERY = re.compile(r"\?([^\s\"']*)")
REDACTED = "[redacted]"


def _redact_query(match: re.Match[str]) -> str:
    pairs = []
    for pair in match.group(1).split("&"):
        name, sep, _ = pair.partition("=")
        if sep and unquote_plus(name).strip().lower() == TOKEN_QUERY_PARAMETER:
            pair = f"{name}={REDACTED}"
        pairs.append(pair)
    return "?" + "&".join(pairs)


def redact(text: str) -> str:
    return _QUERY.sub(_redact_query, text) if "?" in text else text


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
