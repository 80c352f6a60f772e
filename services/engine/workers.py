"""Worker processes that decode, seen from the event loop.

One single-process executor per worker keeps a session on the process that holds its
decoder (a decoder's state cannot move); a new session goes to the least loaded worker, so
no worker holds more than ceil(capacity / workers) sessions and every worker preloads that
many decoders. A worker that dies fails only its own sessions and is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from services.engine import decoding
from services.engine.errors import DecodeError
from services.engine.recognizer import Result

log = logging.getLogger(__name__)
T = TypeVar("T")


class Worker:
    def __init__(self, index: int, spec: decoding.ModelSpec, preload: int) -> None:
        self.index = index
        self.spec = spec
        self.preload = preload
        self.sessions = 0
        self.pid = 0
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        # spawn: the event loop's process has threads, which fork would copy half-alive.
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=decoding.init_worker,
            initargs=(self.spec, self.preload),
        )

    async def start(self) -> None:
        """Start the process and wait until its decoders are loaded."""
        self.pid = await self.call(decoding.ready, limit=None)

    async def call(self, fn: Callable[..., T], *args: Any, limit: float | None) -> T:
        loop = asyncio.get_running_loop()
        executor = self._executor
        try:
            return await asyncio.wait_for(loop.run_in_executor(executor, fn, *args), limit)
        except BrokenProcessPool as exc:
            self._replace(executor)
            raise DecodeError(f"worker {self.index} died") from exc
        except TimeoutError as exc:
            raise DecodeError(f"worker {self.index} took longer than {limit} s") from exc

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._executor is broken:
            log.error("worker process died; starting another", extra={"worker": self.index})
            broken.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_executor()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class WorkerPool:
    """The decoding processes of one engine process."""

    def __init__(self, spec: decoding.ModelSpec, workers: int, preload: int, timeout: float):
        self.timeout = timeout
        self.workers = [Worker(i, spec, preload) for i in range(workers)]

    async def __aenter__(self) -> WorkerPool:
        try:
            await asyncio.gather(*(worker.start() for worker in self.workers))
        except BaseException:
            self.shutdown()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.shutdown)

    def shutdown(self) -> None:
        for worker in self.workers:
            worker.shutdown()

    def session(self, session_id: str) -> DecodingSession:
        worker = min(self.workers, key=lambda w: w.sessions)
        return DecodingSession(session_id, worker, self.timeout)


class DecodingSession:
    """One session's decoder, in the worker process that holds it; calls are made in order."""

    def __init__(self, session_id: str, worker: Worker, timeout: float) -> None:
        self.session_id = session_id
        self.worker = worker
        self.timeout = timeout
        self._opened = False
        worker.sessions += 1

    @property
    def label(self) -> str:
        """Where the session decodes, for its summary line."""
        return f"worker-{self.worker.index}"

    async def accept(self, pcm: bytes) -> Result:
        await self._open()
        return await self.worker.call(decoding.accept, self.session_id, pcm, limit=self.timeout)

    async def finish(self, pcm: bytes, time_base: float | None = None) -> Result:
        await self._open()
        return await self.worker.call(
            decoding.finish, self.session_id, pcm, time_base, limit=self.timeout
        )

    async def _open(self) -> None:
        if not self._opened:
            self._opened = True
            await self.worker.call(decoding.open_session, self.session_id, limit=self.timeout)

    async def aclose(self) -> None:
        """Give the decoder back to its worker (best effort: a dead worker has no decoder)."""
        self.worker.sessions -= 1
        if self._opened:
            with contextlib.suppress(DecodeError):
                await self.worker.call(decoding.close_session, self.session_id, limit=self.timeout)
