"""The one decode scheduler of a Whisper engine process: what to decode next, across sessions.

Every session hands its closed utterances in (`submit_final`) and says when its open one is
due for a temporary hypothesis (`request_partial`). The scheduler runs decodes in a thread
pool (CTranslate2 releases the GIL, so the event loop goes on and pings are answered) and
fills each free slot by these rules:

1. finals before partials, oldest first — a final is never dropped, and never waits for a
   partial: finals have `parallel` slots of their own, partials only what finals leave free
   of `parallel` (so at most twice `parallel` decodes run, briefly, when finals arrive while
   partials are running);
2. a partial only when no final waits; the session that has waited longest first; its audio
   is taken when the decode starts, so a late partial covers everything heard so far;
3. up to `max_batch` decodes of the same kind go into one CTranslate2 batch.

A session asks for at most one partial at a time, so when the engine falls behind, partials
are skipped (counted in `kikimimi_engine_partials_skipped_total`), not queued: the backlog
can only be finals, bounded by the sessions' own limit on undecoded utterances.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from services.common.audio import SAMPLE_RATE
from services.engine.utterances import Utterance, UtteranceStream
from services.engine.whisper_decoder import Decoded

log = logging.getLogger(__name__)


class Client(Protocol):
    """A session as the scheduler sees it."""

    stream: UtteranceStream

    def delivered(self, error: BaseException | None = None) -> None: ...


@dataclass(eq=False)
class Job:
    client: Client
    utterance: Utterance
    audio: np.ndarray
    final: bool
    queued: float = field(default_factory=time.monotonic)


# (audio batch, final) → results: finals are decoded with more care (docs/engines.md).
Decode = Callable[[Sequence[np.ndarray], bool], list[Decoded]]


class SchedulerStats(Protocol):
    def decoded(self, final: bool, batch: int, seconds: float, audio_seconds: float) -> None: ...
    def partial_skipped(self, count: int) -> None: ...


class DecodeScheduler:
    def __init__(
        self, decode: Decode, parallel: int, max_batch: int, stats: SchedulerStats
    ) -> None:
        self._decode = decode
        self.parallel = parallel
        self.max_batch = max_batch
        self._stats = stats
        self._finals: deque[Job] = deque()
        self._partials: OrderedDict[Client, None] = OrderedDict()  # insertion = request order
        self._running = {True: 0, False: 0}  # decodes running, finals (True) and partials
        # Finals have `parallel` slots of their own, so that a final never waits for partials
        # to finish; partials use what finals leave of `parallel`.
        self._executor = ThreadPoolExecutor(max_workers=2 * parallel, thread_name_prefix="decode")
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what sessions ask ----------------------------------------------------------------

    def submit_final(self, client: Client, utterance: Utterance) -> None:
        assert utterance.audio is not None
        self._finals.append(Job(client, utterance, utterance.audio, final=True))
        self._partials.pop(client, None)  # the utterance it wanted a partial of is closed
        self._dispatch()

    def request_partial(self, client: Client) -> None:
        if client not in self._partials:
            self._partials[client] = None
            self._dispatch()

    def forget(self, client: Client) -> None:
        """A session ended: drop its waiting work (running decodes finish unseen)."""
        self._partials.pop(client, None)
        self._finals = deque(job for job in self._finals if job.client is not client)

    @property
    def waiting_finals(self) -> int:
        return len(self._finals)

    # -- running decodes --------------------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                return
            self._running[batch[0].final] += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _next_batch(self) -> list[Job]:
        if self._finals and self._running[True] < self.parallel:
            return [self._finals.popleft() for _ in range(min(self.max_batch, len(self._finals)))]
        if self._finals or sum(self._running.values()) >= self.parallel:
            return []
        batch: list[Job] = []
        while self._partials and len(batch) < self.max_batch:
            client, _ = self._partials.popitem(last=False)
            stream = client.stream
            missed = self._missed_partials(stream)
            taken = stream.partial_audio()
            if taken is None:
                self._stats.partial_skipped(1)
                continue
            if missed:
                self._stats.partial_skipped(missed)
            utterance, audio = taken
            batch.append(Job(client, utterance, audio, final=False))
        return batch

    @staticmethod
    def _missed_partials(stream: UtteranceStream) -> int:
        """Partial decodes that fell due while this request waited, beyond the one it gets."""
        utterance = stream.open
        if utterance is None:
            return 0
        interval = stream.settings.partial_interval * SAMPLE_RATE
        return max(0, int((stream.received - utterance.partial_at) // interval) - 1)

    async def _run(self, batch: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        began = time.monotonic()
        try:
            results = await loop.run_in_executor(
                self._executor, self._decode, [job.audio for job in batch], batch[0].final
            )
        except Exception as exc:
            log.exception("decode failed", extra={"batch": len(batch)})
            for job in batch:
                if job.final:
                    job.client.delivered(exc)
            results = None
        finally:
            self._running[batch[0].final] -= 1
        if results is not None:
            final = batch[0].final
            audio = sum(len(job.audio) for job in batch) / SAMPLE_RATE
            seconds = time.monotonic() - began
            self._stats.decoded(final, len(batch), seconds, audio)
            log.debug(
                "decoded",
                extra={
                    "kind": "final" if final else "partial",
                    "batch": len(batch),
                    "seconds": round(seconds, 3),
                    "queued_seconds": round(began - min(job.queued for job in batch), 3),
                    "audio_seconds": [round(len(job.audio) / SAMPLE_RATE, 2) for job in batch],
                    "repetitive": [r.repetitive for r in results],
                    "waiting_finals": len(self._finals),
                    "waiting_partials": len(self._partials),
                },
            )
            for job, decoded in zip(batch, results, strict=True):
                if job.final:
                    job.client.stream.deliver_final(job.utterance, decoded)
                else:
                    job.client.stream.deliver_partial(job.utterance, decoded)
                job.client.delivered()
        self._dispatch()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
