"""Japanese morphology in the result formats, for text as a real recogniser gives it.

Whisper's Japanese words are sub-word tokens without pronunciations and its text has
punctuation; these tests feed such results and check what a client receives.
"""

from __future__ import annotations

import time

from services.common.pb import recognizer_pb2 as pb
from services.endpoint import morphology
from services.endpoint.formats import ResultFormatter
from services.endpoint.handshake import Options

# What the Whisper base model recognised for the fixture, as tokens with times (ms).
WHISPER_TOKENS = [
    ("ちょ", 580, 800),
    ("っと", 800, 1030),
    ("遅い", 1030, 1390),
    ("中", 1390, 1600),
    ("職", 1600, 1890),
    ("を", 1890, 1980),
    ("取る", 1980, 2220),
    ("ため、", 2220, 2610),
    ("ファミリー", 2930, 3480),
    ("レストラン", 3480, 4020),
    ("に", 4020, 4150),
    ("入った", 4150, 4540),
    ("のです。", 4540, 5100),
]
WHISPER_TEXT = "".join(token for token, _, _ in WHISPER_TOKENS)


def whisper_words() -> list[pb.Word]:
    return [pb.Word(text=t, start_ms=s, end_ms=e, confidence=0.9) for t, s, e in WHISPER_TOKENS]


def finished(language: str, text: str, words: list[pb.Word]) -> pb.RecognizeResponse:
    return pb.RecognizeResponse(finished=pb.Finished(text=text, words=words))


def test_asr_words_are_morphemes_with_katakana_and_times_from_the_tokens() -> None:
    """asr, Japanese without engine pronunciations: morphemes, pronunciations, token times."""
    formatter = ResultFormatter("asr", "ja", Options(), "s")
    [message] = formatter.feed(finished("ja", WHISPER_TEXT, whisper_words()), 0.0)
    words = message["response"]
    assert [w["result"] for w in words] == [
        "ちょっと",
        "遅い",
        "中",
        "職",
        "を",
        "取る",
        "ため",
        "ファミリーレストラン",
        "に",
        "入っ",
        "た",
        "の",
        "です",
    ]
    assert words[0] == {"result": "ちょっと", "pronunciation": "チョット", "time": [580, 1030]}
    # A morpheme across two tokens spans both; two morphemes in one token share its span.
    assert words[7]["time"] == [2930, 4020]
    assert words[9]["time"] == words[10]["time"] == [4150, 4540]
    assert words[9]["pronunciation"] == "ハイッ"


def test_asr_segment_words_are_analysed_as_they_are_determined() -> None:
    """asr in progress: a determined segment's words are its morphemes, timed."""
    formatter = ResultFormatter("asr", "ja", Options(), "s")
    tokens = whisper_words()[:5]
    segment = pb.Segment(text="ちょっと遅い中職", words=tokens, start_ms=0, end_ms=1890)
    [message] = formatter.feed(pb.RecognizeResponse(segment=segment), 0.0)
    assert [(w["result"], w["pronunciation"]) for w in message["response"]] == [
        ("ちょっと", "チョット"),
        ("遅い", "オソイ"),
        ("中", "ナカ"),
        ("職", "ショク"),
    ]


def test_v1_lines_carry_reading_base_form_pos_and_conjugation() -> None:
    """v1, Japanese: MeCab/IPADIC fields; punctuation has no line."""
    formatter = ResultFormatter("nict-asr", "ja-JP", Options(), "s")
    [message] = formatter.feed(finished("ja", WHISPER_TEXT, whisper_words()), 0.0)
    lines = [e["result"] for e in message["response"]]
    assert "取る|トル|取る|動詞-自立|五段・ラ行|基本形||" in lines
    assert "入っ|ハイッ|入る|動詞-自立|五段・ラ行|連用タ接続||" in lines
    assert not any(line.startswith(("、", "。")) for line in lines)
    assert lines[-2:] == ["|||SENT-START-END||||", "|||UTT-END||||"]


def test_v2_words_are_morphemes_of_partials_and_segments() -> None:
    """v2, Japanese: `words` of temporary and determined entries are morphemes."""
    formatter = ResultFormatter("nict-asr", "ja", Options("v2", True, True), "s")
    partial = pb.Partial(text="ちょっと遅い", words=whisper_words()[:3])
    [temporary] = formatter.feed(pb.RecognizeResponse(partial=partial), 0.0)
    assert temporary["response"][0]["words"] == ["ちょっと", "遅い"]
    segment = pb.Segment(text="入ったのです。", words=whisper_words()[-2:], start_ms=4150)
    [determined] = formatter.feed(pb.RecognizeResponse(segment=segment), 100.0)
    assert determined["response"][0] == {
        "result": "入ったのです。",
        "words": ["入っ", "た", "の", "です"],
        "determined": True,
        "time": 4150,
    }


def test_english_asr_words_keep_the_engines_shape() -> None:
    """asr, English: the engine's words as they are, empty pronunciations included."""
    formatter = ResultFormatter("asr", "en", Options(), "s")
    words = [pb.Word(text="hello", start_ms=0, end_ms=400)]
    [message] = formatter.feed(finished("en", "hello", words), 0.0)
    assert message["response"] == [{"result": "hello", "pronunciation": "", "time": [0, 400]}]


def test_unknown_and_latin_words_get_a_line_too() -> None:
    """Words IPADIC does not know keep their surface as base form and kana as reading."""
    [latin, unknown] = morphology.words_of("Zoom ぴえん")
    assert latin.nict_line().split("|")[:3] == ["Zoom", "Zoom", "Zoom"]
    assert (unknown.surface, unknown.reading, unknown.base) == ("ぴえん", "ピエン", "ぴえん")


def test_analysis_of_a_segment_takes_well_under_a_millisecond() -> None:
    """One analysis is cheap enough to run on the event loop (measured: ~70 µs)."""
    morphology.words_of(WHISPER_TEXT)  # the tagger is built on first use
    runs = 200
    started = time.perf_counter()
    for _ in range(runs):
        morphology.words_of(WHISPER_TEXT)
    per_segment = (time.perf_counter() - started) / runs
    assert per_segment < 0.001, f"{per_segment * 1e6:.0f} µs per segment"


def test_asr_final_repeats_the_words_sent_for_each_segment() -> None:
    """asr: recog-finished lists exactly the words sent in progress, though the whole text
    analysed at once would cut differently (ファミリー|レストラン across two segments)."""
    formatter = ResultFormatter("asr", "ja", Options(), "s")
    first = pb.Segment(text="ファミリー", words=[pb.Word(text="ファミリー", end_ms=500)])
    second = pb.Segment(
        text="レストランに入った",
        words=[pb.Word(text="レストラン", start_ms=500, end_ms=900), pb.Word(text="に入った")],
    )
    sent = []
    for segment in (first, second):
        [message] = formatter.feed(pb.RecognizeResponse(segment=segment), 0.0)
        sent.extend(message["response"])
    words = [*first.words, *second.words]
    [final] = formatter.feed(finished("ja", "ファミリーレストランに入った", words), 0.0)
    assert final["response"] == sent
    assert [w["result"] for w in sent] == ["ファミリー", "レストラン", "に", "入っ", "た"]


def test_v1_lines_are_the_segments_morphemes() -> None:
    """v1: the lines are each determined segment's morphemes, in order (the segment is the
    unit of analysis in every format), when recog-finished covers those segments."""
    formatter = ResultFormatter("nict-asr", "ja", Options(), "s")
    first = pb.Segment(text="ファミリー", words=[pb.Word(text="ファミリー")])
    second = pb.Segment(text="レストランに入った", words=[pb.Word(text="レストランに入った")])
    for segment in (first, second):
        assert formatter.feed(pb.RecognizeResponse(segment=segment), 0.0) == []
    words = [*first.words, *second.words]
    [final] = formatter.feed(finished("ja", "ファミリーレストランに入った", words), 0.0)
    surfaces = [e["result"].split("|")[0] for e in final["response"][:-2]]
    assert surfaces == ["ファミリー", "レストラン", "に", "入っ", "た"]
