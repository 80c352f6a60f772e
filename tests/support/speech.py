"""Test speech the project makes itself: English from flite's voices, Japanese from Open JTalk.

Both give 16 kHz mono s16le PCM, what the tests stream. The tools come from
`.ci/install-test-deps.sh` (run by `make test`); a missing one is an error naming what to
install, never a skip. Synthesis is deterministic, so a test may cache what it made.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
import unicodedata
from pathlib import Path

import jiwer
import numpy as np
import soundfile
import soxr

RATE = 16000
ROOT = Path(__file__).resolve().parent.parent.parent
TTS_CACHE = ROOT / ".cache" / "tts"
OPEN_JTALK_DICTIONARY = Path("/var/lib/mecab/dic/open-jtalk/naist-jdic")
INSTALL = "run `bash .ci/install-test-deps.sh` (as root), as `make test` does"

# flite's voices a new user would try; kal is an 8 kHz voice (resampled).
ENGLISH_VOICES = ("slt", "awb", "kal")
ENGLISH_SENTENCES = (
    "the meeting has been moved to three thirty on thursday afternoon",
    "could you send me the report before the end of the day",
    "the coffee machine on the second floor is broken again",
)
JAPANESE_SENTENCES = (
    "駅の近くに新しいパン屋ができました。",
    "今日はとても暑いので水をたくさん飲んでください。",
    "週末は家族と一緒に海へ行く予定です。",
    "この電車は東京駅まで止まりません。",
)

_UNITS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
]
_UNITS += ["fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _spelled(number: int) -> str:
    if number < 20:
        return _UNITS[number]
    if number < 100:
        tens, units = divmod(number, 10)
        return _TENS[tens] + (f" {_UNITS[units]}" if units else "")
    return str(number)


def english_words(text: str) -> str:
    """Lower case, no punctuation, numbers below 100 spelled out ("3:30" → "three thirty"):
    the reference and the hypothesis of a WER are written alike."""
    spaced = re.sub(r"(?<=\d)[.:](?=\d)", " ", text.lower())
    spelled = re.sub(r"\d+", lambda m: _spelled(int(m.group())), spaced)
    return " ".join(re.sub(r"[^a-z' ]", " ", spelled).split())


def japanese_characters(text: str) -> str:
    """No punctuation, symbols or spaces: what a CER compares."""
    return "".join(c for c in text if unicodedata.category(c)[0] in "LN")


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(english_words(reference), english_words(hypothesis)))


def cer(reference: str, hypothesis: str) -> float:
    return float(jiwer.cer(japanese_characters(reference), japanese_characters(hypothesis)))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (test speech): {INSTALL}")
    return path


def _pcm16k(wav: bytes) -> bytes:
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != RATE:
        mono = soxr.resample(mono, rate, RATE)
    return bytes((np.clip(mono, -1.0, 1.0) * 32767).astype("<i2").tobytes())


def english(text: str, voice: str = "slt") -> bytes:
    """`text` spoken by flite's `voice`, as 16 kHz s16le PCM."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "speech.wav"
        subprocess.run(
            [_tool("flite"), "-voice", voice, "-t", text, "-o", str(out)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return _pcm16k(out.read_bytes())


def mei_voice() -> Path:
    """The HTS voice that .ci/install-japanese-tts.sh cached (its name holds its SHA-256)."""
    voices = sorted(TTS_CACHE.glob("mei_normal-*.htsvoice"))
    if not voices:
        raise RuntimeError(f"the Japanese voice is not in {TTS_CACHE}: {INSTALL}")
    return voices[-1]


def japanese(text: str, speed: float = 1.0) -> bytes:
    """`text` spoken by Open JTalk's Mei voice (48 kHz, resampled), as 16 kHz s16le PCM."""
    if not OPEN_JTALK_DICTIONARY.is_dir():
        raise RuntimeError(f"Open JTalk's dictionary is missing: {INSTALL}")
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "speech.wav"
        subprocess.run(
            [
                _tool("open_jtalk"),
                "-x",
                str(OPEN_JTALK_DICTIONARY),
                "-m",
                str(mei_voice()),
                "-r",
                str(speed),
                "-ow",
                str(out),
            ],
            input=text.encode("utf-8"),
            check=True,
            capture_output=True,
            timeout=60,
        )
        return _pcm16k(out.read_bytes())


def silence(seconds: float) -> bytes:
    return bytes(2 * round(seconds * RATE))
