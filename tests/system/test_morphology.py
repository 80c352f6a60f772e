"""Morphology through all tiers: the fixture, recognised by engine_stub's transcript table
(the audio's SHA-256 → production's sentence), comes back in production's morpheme layout."""

from __future__ import annotations

import json

import pytest

from tests.support.audio import FIXTURES
from tests.support.client import mimi_headers, stream_session
from tests.system.conftest import Target

pytestmark = pytest.mark.external

EXPECTED = json.loads((FIXTURES / "ja-chotto-osoi-chushoku.expected.json").read_text("utf-8"))


async def test_v1_lines_equal_productions_field_for_field(target: Target, sample: bytes) -> None:
    """nict-asr v1: surface|reading|base|POS|conjugation lines exactly as production's."""
    headers = mimi_headers("nict-asr", "ja", options="response_format=v1", token=target.token)
    result = await stream_session(target.ws, sample, headers)
    assert result.close_code == 1000
    assert result.finished["type"] == "asr#nictlvcsr"
    assert [e["result"] for e in result.finished["response"]] == EXPECTED["nict_v1_results"]


async def test_v2_words_are_productions_morphemes(target: Target, sample: bytes) -> None:
    """nict-asr v2: each determined segment's `words` are production's (ファミリーレストラン
    one word, no punctuation), though the engine split them differently."""
    headers = mimi_headers(
        "nict-asr", "ja", options="response_format=v2;progressive=true", token=target.token
    )
    result = await stream_session(target.ws, sample, headers, frame_bytes=65536)
    assert result.close_code == 1000
    determined = [
        {"result": e["result"], "words": e["words"], "time": e["time"]}
        for m in result.messages
        if m["status"] == "recog-in-progress"
        for e in m["response"]
    ]
    assert [d["words"] for d in determined] == [
        s["words"] for s in EXPECTED["nict_v2_determined_segments"]
    ]
