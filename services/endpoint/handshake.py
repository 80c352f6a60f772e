"""The mimi handshake, without I/O: headers and query string → session parameters.

A header wins over the query parameter of the same meaning; an empty query value counts
as absent (FairyDevices' browser client sends `access-token=` when it has none). Option
values are parsed leniently where real clients differ (booleans in any case), unknown
option keys and unknown headers are ignored, and a malformed value is a 400 naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from services.endpoint.errors import Refusal, bad_request

KNOWN_PROCESSES = ("asr", "nict-asr")
MIN_RATE, MAX_RATE = 8000, 48000
MAX_CHANNELS = 2
TOKEN_QUERY_PARAMETER = "access-token"


@dataclass(frozen=True)
class AudioSpec:
    encoding: Literal["pcm", "flac"] = "pcm"
    rate: int = 16000
    channels: int = 1


@dataclass(frozen=True)
class Options:
    response_format: Literal["v1", "v2"] = "v1"
    progressive: bool = False
    temporary: bool = False
    temporary_interval_ms: int = 1500

    def as_map(self) -> dict[str, str]:
        return {
            "response_format": self.response_format,
            "progressive": str(self.progressive).lower(),
            "temporary": str(self.temporary).lower(),
            "temporary_interval": str(self.temporary_interval_ms),
        }


@dataclass(frozen=True)
class SessionParams:
    process: str
    language: str
    audio: AudioSpec = field(default_factory=AudioSpec)
    options: Options = field(default_factory=Options)
    token: str = ""


def _pick(headers: Mapping[str, str], query: Mapping[str, str], *names: str) -> str:
    """The first non-empty value among header names (lower-case) then query names."""
    for name in names:
        value = headers.get(name) if not name.startswith("?") else query.get(name[1:])
        if value is not None and value.strip():
            return value.strip()
    return ""


def parse_content_type(value: str) -> AudioSpec:
    """`audio/x-pcm;bit=16;rate=16000;channels=1` (or audio/x-flac) → AudioSpec."""
    parts = [p.strip() for p in value.split(";") if p.strip()]
    if not parts:
        return AudioSpec()
    media = parts[0].lower()
    encodings: dict[str, Literal["pcm", "flac"]] = {"audio/x-pcm": "pcm", "audio/x-flac": "flac"}
    if media not in encodings:
        raise bad_request(
            "unsupported_content_type",
            f"content type {parts[0]!r} is not supported; use audio/x-pcm or audio/x-flac",
        )
    params: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, val = part.partition("=")
        if not sep:
            raise bad_request("invalid_content_type", f"content type parameter {part!r} has no '='")
        params[key.strip().lower()] = val.strip()
    try:
        bit = int(params.get("bit", "16"))
        rate = int(params.get("rate", "16000"))
        channels = int(params.get("channels", "1"))
    except ValueError:
        raise bad_request(
            "invalid_content_type", f"bit, rate and channels must be integers in {value!r}"
        ) from None
    if bit != 16:
        raise bad_request("unsupported_content_type", f"bit={bit} is not supported; use bit=16")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise bad_request(
            "unsupported_content_type",
            f"rate={rate} is not supported; use {MIN_RATE} to {MAX_RATE} Hz",
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise bad_request(
            "unsupported_content_type", f"channels={channels} is not supported; use 1 or 2"
        )
    return AudioSpec(encodings[media], rate, channels)


def _parse_bool(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise bad_request("invalid_options", f"option {key}={value!r} must be true or false")


def parse_options(value: str) -> Options:
    """`response_format=v2;progressive=true;temporary=true;temporary_interval=500`."""
    found: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        key, sep, val = part.partition("=")
        if not sep:
            raise bad_request("invalid_options", f"option {part.strip()!r} has no '='")
        found[key.strip().lower()] = val.strip()
    response_format = found.get("response_format", "v1").lower()
    if response_format not in ("v1", "v2"):
        raise bad_request(
            "invalid_options", f"option response_format={response_format!r} must be v1 or v2"
        )
    interval = 1500
    if "temporary_interval" in found:
        try:
            interval = int(found["temporary_interval"])
        except ValueError:
            interval = -1
        if not 100 <= interval <= 60000:
            raise bad_request(
                "invalid_options",
                f"option temporary_interval={found['temporary_interval']!r} "
                "must be 100 to 60000 ms",
            )
    return Options(
        response_format="v2" if response_format == "v2" else "v1",
        progressive=_parse_bool("progressive", found["progressive"])
        if "progressive" in found
        else False,
        temporary=_parse_bool("temporary", found["temporary"]) if "temporary" in found else False,
        temporary_interval_ms=interval,
    )


def parse_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    authorization = headers.get("authorization", "").strip()
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        raise Refusal(
            401,
            "invalid_token",
            "the Authorization header must be 'Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
        )
    return query.get(TOKEN_QUERY_PARAMETER, "").strip()


def parse_handshake(headers: Mapping[str, str], query: Mapping[str, str]) -> SessionParams:
    """Session parameters from lower-cased `headers` and `query`, or a Refusal (400/401)."""
    process = _pick(headers, query, "x-mimi-process", "?process")
    if not process:
        raise bad_request(
            "missing_process",
            "x-mimi-process (or ?process=) is required; supported: " + ", ".join(KNOWN_PROCESSES),
        )
    language = _pick(headers, query, "x-mimi-input-language", "?input-language")
    if not language:
        raise bad_request(
            "missing_language", "x-mimi-input-language (or ?input-language=) is required"
        )
    content_type = _pick(headers, query, "x-mimi-content-type", "content-type", "?content-type")
    options = _pick(headers, query, "x-mimi-nict-asr-options", "?nict-asr-options")
    return SessionParams(
        process=process,
        language=language,
        audio=parse_content_type(content_type),
        options=parse_options(options),
        token=parse_token(headers, query),
    )
