"""Test speech the project makes itself: English from flite's voices, Japanese from Open JTalk.

Both give 16 kHz mono s16le PCM, what the tests stream. The tools come from
`.ci/install-test-deps.sh` (run by `make test`); a missing one is an error naming what to
install, never a skip. Synthesis is deterministic, so a test may cache what it made.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import soxr

RATE = 16000
ROOT = Path(__file__).resolve().parent.parent.parent
TTS_CACHE = ROOT / ".cache" / "tts"
OPEN_JTALK_DICTIONARY = Path("/var/lib/mecab/dic/open-jtalk/naist-jdic")
INSTALL = "run `bash .ci/install-test-deps.sh` (as root), as `make test` does"

# flite's voices a new user would try; kal is an 8 kHz voice (resampled).
ENGLISH_VOICES = ("slt", "awb", "kal", "rms")
ENGLISH_SENTENCES = (
    "the meeting has been moved to three thirty on thursday afternoon",
    "please open the window and turn off the lights in the kitchen",
    "my train leaves from platform nine at a quarter past seven",
)
JAPANESE_SENTENCES = (
    "明日の会議は午後三時から始まります。",
    "駅の近くに新しいパン屋ができました。",
    "今日はとても暑いので水をたくさん飲んでください。",
)


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
