"""The handshake parser without sockets: headers and query string → session parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.endpoint.errors import Refusal
from services.endpoint.handshake import (
    AudioSpec,
    Options,
    parse_content_type,
    parse_handshake,
    parse_options,
)

T = TypeVar("T")

BASE = {"x-mimi-process": "nict-asr", "x-mimi-input-language": "ja"}


def outcome(parse: Callable[..., T], *args: Any) -> T | Refusal:
    """What `parse` returns, or the Refusal it raises."""
    try:
        return parse(*args)
    except Refusal as refusal:
        return refusal


def refused(headers: dict[str, str], query: dict[str, str] | None = None) -> Refusal:
    with pytest.raises(Refusal) as info:
        parse_handshake(headers, query or {})
    return info.value


def test_defaults_are_mimis() -> None:
    """Without content type or options: 16 kHz mono PCM and response_format v1."""
    params = parse_handshake(BASE, {})
    assert params.audio == AudioSpec("pcm", 16000, 1)
    assert params.options == Options("v1", False, False, 1500)
    assert params.token == ""


def test_header_wins_over_query() -> None:
    """A header wins over the query parameter of the same meaning."""
    params = parse_handshake(
        {**BASE, "content-type": "audio/x-pcm;bit=16;rate=8000"},
        {"process": "asr", "input-language": "en", "content-type": "audio/x-flac"},
    )
    assert (params.process, params.language) == ("nict-asr", "ja")
    assert params.audio == AudioSpec("pcm", 8000, 1)


def test_query_only_as_browsers_send_it() -> None:
    """Every parameter can come from the query string; an empty access-token is absent."""
    params = parse_handshake(
        {"origin": "https://example.com"},
        {
            "process": "nict-asr",
            "input-language": "ja",
            "content-type": "audio/x-pcm;bit=16;rate=44100;channels=2",
            "nict-asr-options": "response_format=v2;progressive=true",
            "access-token": "",
        },
    )
    assert params.audio == AudioSpec("pcm", 44100, 2)
    assert params.options.response_format == "v2"
    assert params.options.progressive
    assert params.token == ""


def test_x_mimi_content_type_wins_over_content_type() -> None:
    """libmimiio's X-Mimi-Content-Type is read before Content-Type."""
    params = parse_handshake(
        {**BASE, "x-mimi-content-type": "audio/x-flac;bit=16;rate=16000", "content-type": "x"},
        {},
    )
    assert params.audio.encoding == "flac"


def test_python_sample_capitalised_booleans() -> None:
    """FairyDevices' Python sample sends progressive=True;temporary=True."""
    options = parse_options("response_format=v2;progressive=True;temporary=True")
    assert options.progressive
    assert options.temporary


def test_unknown_option_keys_are_ignored() -> None:
    """Option keys the endpoint does not know are ignored."""
    assert parse_options("foo=bar;response_format=v2").response_format == "v2"


def test_process_is_case_sensitive_and_passed_on() -> None:
    """The process is not lower-cased; the route table decides whether it exists."""
    assert parse_handshake({**BASE, "x-mimi-process": "ASR"}, {}).process == "ASR"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"x-mimi-input-language": "ja"}, "missing_process"),
        ({"x-mimi-process": "asr"}, "missing_language"),
        ({**BASE, "content-type": "audio/wav"}, "unsupported_content_type"),
        ({**BASE, "content-type": "audio/x-pcm;bit=8"}, "unsupported_content_type"),
        ({**BASE, "content-type": "audio/x-pcm;rate=7999"}, "unsupported_content_type"),
        ({**BASE, "content-type": "audio/x-pcm;rate=96000"}, "unsupported_content_type"),
        ({**BASE, "content-type": "audio/x-pcm;channels=3"}, "unsupported_content_type"),
        ({**BASE, "content-type": "audio/x-pcm;rate=fast"}, "invalid_content_type"),
        ({**BASE, "content-type": "audio/x-pcm;rate"}, "invalid_content_type"),
        ({**BASE, "x-mimi-nict-asr-options": "response_format=v3"}, "invalid_options"),
        ({**BASE, "x-mimi-nict-asr-options": "progressive=maybe"}, "invalid_options"),
        ({**BASE, "x-mimi-nict-asr-options": "temporary_interval=5"}, "invalid_options"),
        ({**BASE, "x-mimi-nict-asr-options": "progressive"}, "invalid_options"),
    ],
)
def test_bad_parameters_are_400_naming_the_problem(headers: dict[str, str], code: str) -> None:
    """Each missing or malformed parameter is a 400 with its own code."""
    refusal = refused(headers)
    assert (refusal.status, refusal.code, refusal.retryable) == (400, code, False)
    assert refusal.message


def test_malformed_authorization_is_401() -> None:
    """An Authorization header that is not 'Bearer <token>' is a 401 with WWW-Authenticate."""
    refusal = refused({**BASE, "authorization": "Basic abc"})
    assert refusal.status == 401
    assert refusal.headers["WWW-Authenticate"].startswith("Bearer")


def test_bearer_header_wins_over_query_token() -> None:
    """The Authorization header wins over ?access-token=."""
    params = parse_handshake({**BASE, "authorization": "Bearer h"}, {"access-token": "q"})
    assert params.token == "h"


text = st.text(max_size=40)
header_names = st.sampled_from(
    [
        "x-mimi-process",
        "x-mimi-input-language",
        "content-type",
        "x-mimi-content-type",
        "x-mimi-nict-asr-options",
        "authorization",
        "x-mimi-lid-options",
    ]
)
query_names = st.sampled_from(
    ["process", "input-language", "content-type", "nict-asr-options", "access-token", "x"]
)


@given(st.dictionaries(header_names, text), st.dictionaries(query_names, text))
def test_any_input_parses_or_is_refused_with_400_or_401(
    headers: dict[str, str], query: dict[str, str]
) -> None:
    """Arbitrary headers and query: parameters, or a Refusal (401 only for Authorization)."""
    result = outcome(parse_handshake, headers, query)
    if isinstance(result, Refusal):
        assert result.status in (400, 401)
        if result.status == 401:
            assert "authorization" in headers
        assert set(result.body()["error"]) == {"code", "message", "retryable"}


@given(
    st.lists(
        st.one_of(
            st.sampled_from(["audio/x-pcm", "audio/x-flac", "AUDIO/X-PCM", "bit=16", ""]),
            st.builds(
                "{}={}".format,
                st.sampled_from(["bit", "rate", "channels", "endian"]),
                st.one_of(st.integers(-10, 200000).map(str), text),
            ),
            text,
        ),
        max_size=6,
    ).map(";".join)
)
def test_any_content_type_parses_or_is_400(value: str) -> None:
    """Arbitrary content types: an AudioSpec within bounds, or a 400."""
    spec = outcome(parse_content_type, value)
    if isinstance(spec, Refusal):
        assert spec.status == 400
    else:
        assert 8000 <= spec.rate <= 48000
        assert spec.channels in (1, 2)


@given(
    st.lists(
        st.one_of(
            st.builds(
                "{}={}".format,
                st.sampled_from(
                    ["response_format", "progressive", "temporary", "temporary_interval", "x"]
                ),
                st.one_of(st.sampled_from(["v1", "v2", "True", "false", "500"]), text),
            ),
            text,
        ),
        max_size=6,
    ).map(";".join)
)
def test_any_options_parse_or_are_400(value: str) -> None:
    """Arbitrary option strings: Options within bounds, or a 400."""
    options = outcome(parse_options, value)
    if isinstance(options, Refusal):
        assert options.status == 400
    else:
        assert 100 <= options.temporary_interval_ms <= 60000
