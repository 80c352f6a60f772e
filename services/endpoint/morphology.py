"""Japanese morphology for the result formats: MeCab (fugashi) with the IPADIC dictionary.

The engines speak vosk-server's protocol, which carries words and nothing about them, so
the endpoint — the tier that owns the result formats — analyses the recognised text itself
(docs/protocol.md, "Morphology"). The dictionary ships inside the `ipadic` package; the
tagger is built once per process, on first use, and one analysis of a segment costs tens of
microseconds, so it runs inline on the event loop.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import fugashi
import ipadic

from services.common.pb import recognizer_pb2 as pb

# IPADIC's features: pos1-pos4, conjugation type, conjugation form, base form, reading,
# pronunciation. Words the dictionary does not know have only the first seven.
_POS_FIELDS = 4
_CTYPE, _CFORM, _BASE, _READING, _PRONUNCIATION = 4, 5, 6, 7, 8
_EMPTY = "*"
_SYMBOL = "記号"  # punctuation and other symbols: production's morpheme lines omit them

_HIRAGANA = range(ord("ぁ"), ord("ゖ") + 1)
_TO_KATAKANA = ord("ァ") - ord("ぁ")


def is_analysed(language: str) -> bool:
    """Languages whose results carry morphology from the analyser (Japanese only)."""
    return language.split("-")[0].lower() == "ja"


def katakana(text: str) -> str:
    """Hiragana turned into katakana; everything else kept (a reading for unknown words)."""
    return "".join(chr(ord(c) + _TO_KATAKANA) if ord(c) in _HIRAGANA else c for c in text)


@dataclass(frozen=True, slots=True)
class Morpheme:
    surface: str
    reading: str  # katakana as written (チュウショク): the v1 line's reading
    pronunciation: str  # katakana as said (チューショク): the asr format's pronunciation
    base: str
    pos: str  # IPADIC's levels joined with '-': 名詞-非自立-副詞可能
    conjugation_type: str
    conjugation_form: str
    start: int  # character offsets of the surface in the analysed text
    end: int

    @property
    def is_symbol(self) -> bool:
        return self.pos.split("-")[0] == _SYMBOL

    def nict_line(self) -> str:
        """The `nict-asr` v1 line: surface|reading|base|POS|conj. type|conj. form||."""
        fields = [
            self.surface,
            self.reading,
            self.base,
            self.pos,
            self.conjugation_type,
            self.conjugation_form,
            "",
            "",
        ]
        return "|".join(fields)


@functools.cache
def _tagger() -> fugashi.GenericTagger:
    return fugashi.GenericTagger(ipadic.MECAB_ARGS)


def _field(features: tuple[str, ...], index: int) -> str:
    value = features[index] if index < len(features) else _EMPTY
    return "" if value == _EMPTY else value


def _morpheme(surface: str, features: tuple[str, ...], start: int) -> Morpheme:
    known = len(features) > _PRONUNCIATION
    return Morpheme(
        surface=surface,
        reading=_field(features, _READING) if known else katakana(surface),
        pronunciation=_field(features, _PRONUNCIATION) if known else katakana(surface),
        base=_field(features, _BASE) or surface,
        pos="-".join(f for f in features[:_POS_FIELDS] if f != _EMPTY),
        conjugation_type=_field(features, _CTYPE),
        conjugation_form=_field(features, _CFORM),
        start=start,
        end=start + len(surface),
    )


def analyse(text: str) -> list[Morpheme]:
    """The morphemes of `text`, punctuation included, with their character offsets."""
    morphemes = []
    cursor = 0
    for node in _tagger()(text):
        surface = str(node.surface)
        start = text.find(surface, cursor)
        if start < 0:  # MeCab normalised something away; keep the order, lose the offset
            start = cursor
        cursor = start + len(surface)
        # feature_raw split by hand: fugashi's parsed `feature` costs three times the analysis, and
        # IPADIC's fields never hold a comma.
        morphemes.append(_morpheme(surface, tuple(node.feature_raw.split(",")), start))
    return morphemes


def words_of(text: str) -> list[Morpheme]:
    """The morphemes a result lists: punctuation left out, as production does."""
    return [m for m in analyse(text) if not m.is_symbol]


def timed_words(
    text: str, words: list[pb.Word], start_ms: int, end_ms: int
) -> list[dict[str, Any]]:
    """`text`'s morphemes as `asr` words, timed from the engine's words they overlap.

    The engine's words (Whisper's are sub-word tokens) are located in `text` in order;
    each morpheme spans from the start of the first engine word it overlaps to the end of
    the last. Without engine words every morpheme gets the segment's span.
    """
    owner = _character_owners(text, words)
    result = []
    for morpheme in words_of(text):
        covering = {owner[i] for i in range(morpheme.start, morpheme.end) if owner[i] >= 0}
        if covering:
            begin = min(words[i].start_ms for i in covering)
            finish = max(words[i].end_ms for i in covering)
        else:
            begin, finish = start_ms, end_ms
        result.append(
            {
                "result": morpheme.surface,
                "pronunciation": morpheme.pronunciation,
                "time": [begin, finish],
            }
        )
    return result


def _character_owners(text: str, words: list[pb.Word]) -> list[int]:
    """For each character of `text`, the index of the engine word it belongs to.

    Characters no word claims (spaces, text the engine's words do not spell) belong to the
    word before them, or the first word when none is before; -1 when there are no words.
    """
    owner = [-1] * len(text)
    cursor = 0
    for index, word in enumerate(words):
        token = word.text.strip()
        found = text.find(token, cursor) if token else -1
        if found < 0:
            continue
        for i in range(found, found + len(token)):
            owner[i] = index
        cursor = found + len(token)
    last = -1
    for i, claimed in enumerate(owner):
        if claimed >= 0:
            last = claimed
        elif last >= 0:
            owner[i] = last
    first = next((o for o in owner if o >= 0), -1)
    return [first if o < 0 else o for o in owner]
