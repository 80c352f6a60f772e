"""`python -m services.engine`: load the model in the worker processes, then open the port."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from services.common.logs import configure_logging
from services.common.settings import load_settings
from services.engine.config import Settings
from services.engine.decoding import ModelSpec
from services.engine.server import run
from services.engine.workers import WorkerPool

log = logging.getLogger("services.engine")


def _stop_event() -> asyncio.Event:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def amain(settings: Settings) -> None:
    stop = _stop_event()
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
                "load_seconds": round(time.monotonic() - began, 3),
                "workers": workers,
                "decoders_per_worker": preload,
                "worker_pids": [worker.pid for worker in pool.workers],
            },
        )
        await run(settings, pool, stop)


def main() -> None:
    settings = load_settings(Settings)
    configure_logging("engine", settings.log_level, settings.log_format)
    # One line per connection without the session id; the session summary says more.
    logging.getLogger("websockets.server").setLevel(logging.WARNING)
    asyncio.run(amain(settings))


if __name__ == "__main__":
    main()
