"""The naive streaming Whisper server the engine bench compares against (not a product).

What WhisperLive-style servers do on a CPU: every session has its own timer and, every
`--interval` seconds, re-decodes its whole open utterance with faster-whisper's
`transcribe` (padded to Whisper's 30 s window), in its own thread — no scheduler shared by
the sessions, no batching, no VAD. A decode whose last segment ends `--commit-silence`
seconds before the audio received determines its segments (they are sent, the buffer drops
them); eof decodes what is left. Same model, compute type, beam and language as the
project's engine, so only the streaming policy differs.

It speaks enough of the engine protocol for the bench: `{"config": …}` (ignored), binary
16 kHz s16le audio answered by one `{"partial"}` or determined `{"text", "result"}` reply
each, and `{"eof" : 1}` answered by the final segment, then close 1000.

    python -m bench.engine_baseline --port 2799 --language ja --model-dir DIR
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from faster_whisper import WhisperModel
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from services.common.audio import SAMPLE_RATE

EOF = '{"eof" : 1}'
MAX_BUFFER_S = 25.0  # commit everything before Whisper's 30 s window is full

log = logging.getLogger("engine_baseline")


@dataclass
class Options:
    language: str
    interval: float
    commit_silence: float
    beam_size: int


@dataclass
class Session:
    model: Any
    options: Options
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    offset: float = 0.0  # seconds of the session's audio before `audio`
    decoded_len: int = 0
    partial: str = ""
    determined: list[dict[str, Any]] = field(default_factory=list)

    def decode(self, audio: np.ndarray) -> list[Any]:
        segments, _ = self.model.transcribe(
            audio,
            language=self.options.language,
            beam_size=self.options.beam_size,
            word_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return list(segments)

    def words(self, segments: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "word": w.word.strip(),
                "start": round(self.offset + w.start, 3),
                "end": round(self.offset + w.end, 3),
                "conf": round(w.probability, 3),
            }
            for s in segments
            for w in s.words or ()
            if w.word.strip()
        ]

    async def step(self, final: bool = False) -> None:
        audio = self.audio
        self.decoded_len = len(audio)
        segments = await asyncio.to_thread(self.decode, audio) if len(audio) else []
        duration = len(audio) / SAMPLE_RATE
        last_end = segments[-1].end if segments else 0.0
        paused = bool(segments) and duration - last_end >= self.options.commit_silence
        if final or paused or duration >= MAX_BUFFER_S:
            self._commit(segments, len(audio))
        elif not segments and duration > 2.0:  # silence: keep only the last half second
            self._drop(len(audio) - SAMPLE_RATE // 2)
        else:
            self.partial = "".join(s.text for s in segments).strip()

    def _commit(self, segments: list[Any], upto: int) -> None:
        words = self.words(segments)
        if words:
            self.determined.extend(words)
        self.partial = ""
        self._drop(upto)

    def _drop(self, samples: int) -> None:
        self.offset += samples / SAMPLE_RATE
        self.audio = self.audio[samples:]
        self.decoded_len = max(0, self.decoded_len - samples)

    def reply(self, separator: str) -> str:
        if self.determined:
            words, self.determined = self.determined, []
            text = separator.join(w["word"] for w in words)
            return json.dumps({"result": words, "text": text}, ensure_ascii=False)
        return json.dumps({"partial": self.partial}, ensure_ascii=False)


async def run_session(ws: ServerConnection, model: Any, options: Options) -> None:
    session = Session(model, options)
    separator = "" if options.language == "ja" else " "

    async def timer() -> None:
        while True:
            await asyncio.sleep(options.interval)
            if len(session.audio) > session.decoded_len:
                await session.step()

    decoding = asyncio.create_task(timer())
    try:
        async for message in ws:
            if isinstance(message, bytes):
                samples = np.frombuffer(message, "<i2").astype(np.float32) / 32768.0
                session.audio = np.concatenate([session.audio, samples])
                await ws.send(session.reply(separator))
            elif message == EOF:
                decoding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await decoding
                await session.step(final=True)
                await ws.send(session.reply(separator) if session.determined else '{"text": ""}')
                await ws.close(1000)
                return
    except ConnectionClosed:
        pass
    finally:
        decoding.cancel()


async def main_async(args: argparse.Namespace) -> None:
    began = time.monotonic()
    model = WhisperModel(
        str(args.model_dir),
        device="cpu",
        compute_type=args.compute_type,
        cpu_threads=args.threads,
        num_workers=args.capacity,  # every session may decode at once, as each has its timer
    )
    options = Options(args.language, args.interval, args.commit_silence, args.beam_size)
    log.info("model loaded in %.2f s", time.monotonic() - began)
    async with serve(
        lambda ws: run_session(ws, model, options), "127.0.0.1", args.port, max_size=2**20
    ):
        await asyncio.Future()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_baseline", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--language", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    # The project's engine ends an utterance after 0.5 s of silence (ENGINE_MIN_SILENCE).
    parser.add_argument("--commit-silence", type=float, default=0.5)
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--capacity", type=int, default=8)
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
