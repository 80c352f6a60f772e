"""Whisper decoding of whole utterances with CTranslate2, on an encoder window cut to the audio.

faster-whisper's `transcribe` pads every input to Whisper's 30 s window, so the encoder —
most of the cost — runs on 30 s even for a 2 s utterance. CTranslate2's Whisper encoder
accepts shorter windows, so `WhisperDecoder` pads the log-Mel features only to the audio plus
`WINDOW_MARGIN_SECONDS` (see docs/engines.md for what that costs in accuracy and saves in
time), then generates without timestamps and aligns the tokens to the audio for word timings
(Whisper's cross-attention alignment, as faster-whisper's `word_timestamps`). Several
utterances can be decoded in one batch: they are padded to the longest.

One `WhisperDecoder` (one model in memory) serves every session of the process; CTranslate2
releases the GIL, so calls run in a thread pool while the event loop goes on.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.common.audio import SAMPLE_RATE

# Features are padded to the audio plus this margin (Whisper's 30 s window at most).
WINDOW_MARGIN_SECONDS = 1.0
MAX_WINDOW_SECONDS = 30.0
FRAMES_PER_SECOND = 100  # log-Mel frames (10 ms hop)
# Most tokens one second of speech may produce, plus a constant: a decode that loops
# (Whisper repeats a phrase on short or cut windows) is stopped there instead of at 448.
TOKENS_PER_SECOND = 20
EXTRA_TOKENS = 10
# Whisper's own test for a looping decode: text that compresses this well is a repetition.
MAX_COMPRESSION_RATIO = 2.4
# Languages whose words Whisper writes without spaces: segment text is the plain join.
UNSPACED_LANGUAGES = frozenset({"ja", "zh", "th", "lo", "my", "yue"})


@dataclass(frozen=True)
class DecodedWord:
    """A word of one decode; times in seconds from the start of the decoded audio."""

    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Decoded:
    words: tuple[DecodedWord, ...]
    no_speech_probability: float = 0.0
    repetitive: bool = False  # looped even after the fallback: not to be trusted


def without_loop(tokens: Sequence[int], min_repeat: int = 4) -> list[int]:
    """`tokens` with a loop at their end cut to one copy ("A B C B C B C" → "A B C").

    On a window trimmed to the audio, Whisper does not see where the speech ends and may say
    the utterance again and again (a tail repeating with period p for at least `min_repeat`
    and p tokens). Shorter repeats ("very very", "thank you thank you") are left alone.
    """
    n = len(tokens)
    best = n
    for period in range(1, n // 2 + 1):
        repeated = 0  # tokens at the end equal to the token `period` before them
        while (
            repeated < n - period and tokens[n - 1 - repeated] == tokens[n - 1 - repeated - period]
        ):
            repeated += 1
        if repeated >= max(period, min_repeat):
            best = min(best, n - repeated)
    return list(tokens[:best])


def compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def window_frames(samples: int, margin: float = WINDOW_MARGIN_SECONDS) -> int:
    """Encoder window (feature frames, even) for `samples` of audio plus the margin."""
    seconds = min(samples / SAMPLE_RATE + margin, MAX_WINDOW_SECONDS)
    frames = math.ceil(seconds * FRAMES_PER_SECOND)
    return frames + frames % 2  # the encoder's convolution has stride 2


class WhisperDecoder:
    def __init__(
        self,
        model_dir: Path,
        language: str,
        compute_type: str = "int8",
        threads: int = 1,
        parallel: int = 1,
        beam_size: int = 1,
        margin: float = WINDOW_MARGIN_SECONDS,
    ) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.model = WhisperModel(
            str(model_dir),
            device="cpu",
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=2 * parallel,  # the scheduler's slots: finals', then partials'
        )
        self.language = language
        self.beam_size = beam_size
        self.margin = margin
        self.tokenizer = Tokenizer(
            self.model.hf_tokenizer, True, task="transcribe", language=language
        )
        self._prompt = [*self.tokenizer.sot_sequence, self.tokenizer.no_timestamps]
        self._suppress = [-1, *self.tokenizer.non_speech_tokens]

    def features(self, audio: np.ndarray, frames: int) -> np.ndarray:
        mel: np.ndarray = self.model.feature_extractor(audio)[:, :-1]
        if mel.shape[1] >= frames:
            return mel[:, :frames]
        return np.pad(mel, ((0, 0), (0, frames - mel.shape[1])))

    def decode(self, batch: Sequence[np.ndarray], final: bool = False) -> list[Decoded]:
        """Decode float32 16 kHz utterances (each ≤ 30 s) in one batch.

        Finals use the configured beam, and an utterance whose decode still loops is decoded
        again on Whisper's full 30 s window (slower, but it rarely loops there). Partials are
        greedy, and a looping one comes back `repetitive`.
        """
        beam = self.beam_size if final else 1
        decoded = self._decode(batch, self.margin, beam)
        if final:
            for index, result in enumerate(decoded):
                if result.repetitive and self.margin < MAX_WINDOW_SECONDS:
                    decoded[index] = self._decode([batch[index]], MAX_WINDOW_SECONDS, beam)[0]
        return decoded

    def _decode(self, batch: Sequence[np.ndarray], margin: float, beam: int) -> list[Decoded]:
        import ctranslate2

        if not batch:
            return []
        longest = max(len(audio) for audio in batch)
        frames = window_frames(longest, margin)
        budget = math.ceil(longest / SAMPLE_RATE * TOKENS_PER_SECOND) + EXTRA_TOKENS
        features = np.stack([self.features(audio, frames) for audio in batch])
        encoded = self.model.model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features)), to_cpu=False
        )
        results = self.model.model.generate(
            encoded,
            [self._prompt] * len(batch),
            beam_size=beam,
            max_length=min(len(self._prompt) + budget, self.model.max_length),
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
        )
        tokens = [
            without_loop([t for t in r.sequences_ids[0] if t < self.tokenizer.eot]) for r in results
        ]
        decoded = []
        rows = zip(batch, tokens, results, strict=True)
        for index, (audio, text_tokens, result) in enumerate(rows):
            text = self.tokenizer.decode(text_tokens)
            if compression_ratio(text) > MAX_COMPRESSION_RATIO:
                decoded.append(Decoded((), float(result.no_speech_prob), repetitive=True))
                continue
            words = self._align(encoded, index, text_tokens, len(audio), frames)
            decoded.append(Decoded(tuple(words), float(result.no_speech_prob)))
        return decoded

    def _align(
        self, encoded: Any, index: int, text_tokens: list[int], samples: int, frames: int
    ) -> list[DecodedWord]:
        if not text_tokens:
            return []
        import ctranslate2

        one = encoded if encoded.shape[0] == 1 else _row(encoded, index, ctranslate2)
        # num_frames: the audio's own frames, so that alignment never runs into the padding.
        audio_frames = min(math.ceil(samples / SAMPLE_RATE * FRAMES_PER_SECOND), frames)
        alignment = self.model.find_alignment(self.tokenizer, [text_tokens], one, audio_frames)
        duration = samples / SAMPLE_RATE
        words = []
        for item in alignment[0] if alignment else []:
            text = item["word"].strip() if self.language in UNSPACED_LANGUAGES else item["word"]
            text = text.strip()
            if not text:
                continue
            start = min(float(item["start"]), duration)
            end = min(max(float(item["end"]), start), duration)
            words.append(DecodedWord(text, start, end, float(item["probability"])))
        return words


def _row(encoded: Any, index: int, ctranslate2: Any) -> Any:
    """Row `index` of a batched encoder output, as a batch of one."""
    array = np.asarray(encoded)[index : index + 1]
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(array))
