"""`python -m services.engine`: load the recogniser's model, then open the port.

Started through `services.common.lifecycle.run_service`, like every tier. Which recogniser
runs is `ENGINE_RECOGNIZER` (`whisper`, the default, or `pocketsphinx`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from services.common.lifecycle import run_service
from services.engine.config import Settings
from services.engine.decoding import ModelSpec
from services.engine.metrics import Metrics
from services.engine.models import ModelError, check_model_dir
from services.engine.server import run
from services.engine.utterances import StreamSettings
from services.engine.vad import VadSettings
from services.engine.whisper import WhisperRecognition, WhisperSpec
from services.engine.workers import WorkerPool

log = logging.getLogger("services.engine")


def whisper_spec(settings: Settings) -> WhisperSpec:
    return WhisperSpec(
        model_dir=str(settings.whisper_model_dir),
        language=settings.language,
        compute_type=settings.compute_type,
        threads=settings.threads,
        parallel=min(settings.workers, settings.capacity),
        max_batch=settings.max_batch,
        beam_size=settings.beam_size,
        window_margin=settings.window_margin,
        decode_timeout=settings.decode_timeout,
        stream=StreamSettings(
            vad=VadSettings(
                threshold=settings.vad_threshold,
                neg_threshold=max(settings.vad_threshold - 0.15, 0.01),
                min_silence=settings.min_silence,
                max_utterance=settings.max_utterance,
            ),
            partial_interval=settings.partial_interval,
        ),
    )


async def serve_whisper(settings: Settings, stop: asyncio.Event) -> None:
    try:
        await asyncio.to_thread(check_model_dir, settings.whisper_model_dir)
    except ModelError as exc:
        raise SystemExit(f"ENGINE_WHISPER_MODEL_DIR: {exc}") from None
    metrics = Metrics()
    began = time.monotonic()
    recognition = await asyncio.to_thread(WhisperRecognition, whisper_spec(settings), metrics)
    try:
        await recognition.warm_up()
        log.info(
            "model loaded",
            extra={
                "recognizer": "whisper",
                "model_dir": str(settings.whisper_model_dir),
                "language": settings.language,
                "load_seconds": round(time.monotonic() - began, 3),
                "parallel_decodes": recognition.spec.parallel,
            },
        )
        await run(settings, recognition, metrics, stop)
    finally:
        await recognition.aclose()


async def serve_pocketsphinx(settings: Settings, stop: asyncio.Event) -> None:
    spec = ModelSpec(
        hmm=str(settings.hmm) if settings.hmm else None,
        lm=str(settings.lm) if settings.lm else None,
        dictionary=str(settings.dictionary) if settings.dictionary else None,
        sample_rate=settings.sample_rate,
        fwdflat=settings.fwdflat,
        maxhmmpf=settings.maxhmmpf,
    )
    began = time.monotonic()
    preload = settings.decoders_per_worker()
    workers = settings.worker_processes()
    async with WorkerPool(spec, workers, preload, settings.decode_timeout) as pool:
        log.info(
            "model loaded",
            extra={
                "recognizer": "pocketsphinx",
                "load_seconds": round(time.monotonic() - began, 3),
                "workers": workers,
                "decoders_per_worker": preload,
                "worker_pids": [worker.pid for worker in pool.workers],
            },
        )
        await run(settings, pool, Metrics(), stop)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    # One line per connection without the session id; the session summary says more.
    logging.getLogger("websockets.server").setLevel(logging.WARNING)
    if settings.recognizer == "whisper":
        await serve_whisper(settings, stop)
    else:
        await serve_pocketsphinx(settings, stop)


def main() -> None:
    run_service("engine", Settings, serve)


if __name__ == "__main__":
    main()
