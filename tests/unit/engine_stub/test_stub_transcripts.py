"""The transcript table and the fault plan, without sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine_stub.build_transcript import build
from engine_stub.build_transcript import main as build_main
from engine_stub.faults import Action, Faults
from engine_stub.transcripts import Matcher, TranscriptError, load_table, parse_transcript
from tests.support.audio import EXPECTED, SAMPLE, sample_audio
from tests.support.engine_stub import expected_segments
from tests.support.processes import ROOT

SHIPPED = ROOT / "engine_stub" / "transcripts" / "ja-chotto-osoi-chushoku.json"


def test_shipped_entry_is_rebuilt_by_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    """build_transcript on the fixture prints exactly the shipped transcript file."""
    build_main([str(SAMPLE), str(EXPECTED)])
    assert capsys.readouterr().out == SHIPPED.read_text(encoding="utf-8")


def test_entry_segments_follow_expected_json() -> None:
    """The entry has the three nict v2 segments with the words and times of expected.json."""
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    transcript = build(sample_audio(), expected, "sample", 16000)
    assert [s.text for s in transcript.segments] == [
        s["result"] for s in expected["nict_v2_determined_segments"]
    ]
    assert [[w.word for w in s.words] for s in transcript.segments] == [
        ["ちょっと", "遅い", "昼食"],
        ["を", "とる", "ため", "ファミリー", "レストラン", "に", "入っ"],
        ["た", "の", "です"],
    ]
    assert [s.end_byte for s in transcript.segments[:2]] == [
        s.end_byte for s in expected_segments()[:2]
    ]


@pytest.mark.parametrize("size", [2, 3200, 4096, 32000, 200692])
def test_matcher_confirms_whatever_the_frame_size(size: int) -> None:
    """The sample is confirmed and complete however it is split into frames."""
    (transcript,) = load_table()
    matcher = Matcher([transcript])
    audio = sample_audio()
    for offset in range(0, len(audio), size):
        matcher.feed(audio[offset : offset + size])
    assert matcher.current is transcript
    assert matcher.complete(transcript)


def test_matcher_drops_a_transcript_at_the_first_differing_checkpoint() -> None:
    """Audio that differs from the sample is not confirmed past the differing checkpoint."""
    (transcript,) = load_table()
    matcher = Matcher([transcript])
    audio = bytearray(sample_audio())
    audio[20000] ^= 1
    matcher.feed(bytes(audio[:19000]))
    assert matcher.current is transcript  # the first word's start matched
    matcher.feed(bytes(audio[19000:]))
    assert matcher.current is None


def test_matcher_drops_a_transcript_when_audio_runs_past_it() -> None:
    """Audio longer than the sample is not the sample."""
    (transcript,) = load_table()
    matcher = Matcher([transcript])
    matcher.feed(sample_audio() + b"\x00\x00")
    assert matcher.current is None


def test_inconsistent_transcript_is_refused() -> None:
    """A transcript whose last checkpoint is not the whole audio fails to load."""
    data = json.loads(SHIPPED.read_text(encoding="utf-8"))
    data["checkpoints"] = data["checkpoints"][:-1]
    with pytest.raises(TranscriptError, match="whole audio"):
        parse_transcript(json.dumps(data), "bad.json")


def test_extra_directory_adds_transcripts(tmp_path: Path) -> None:
    """Files in the extra directory join the shipped ones; a bad one is named in the error."""
    data = json.loads(SHIPPED.read_text(encoding="utf-8"))
    data["name"] = "another"
    (tmp_path / "another.json").write_text(json.dumps(data), encoding="utf-8")
    assert [t.name for t in load_table(tmp_path)] == ["another", "ja-chotto-osoi-chushoku"]
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(TranscriptError, match=r"broken\.json"):
        load_table(tmp_path)


def test_faults_start_after_n_audio_frames() -> None:
    """Each fault leaves the first N frames alone and applies from then on."""
    faults = Faults(close_after_frames=3, hang_after_frames=2, garbage_after_frames=1)
    assert [faults.action(n) for n in range(4)] == [
        Action.REPLY,
        Action.GARBAGE,
        Action.DROP,
        Action.DROP,
    ]
    assert [faults.close_now(n) for n in range(5)] == [False, False, False, True, True]
    assert Faults().action(10**6) is Action.REPLY
    assert not Faults().close_now(10**6)
