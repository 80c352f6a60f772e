"""The load generator: real-time streaming clients, run in worker processes.

A worker process runs its share of the sessions of one phase on its own event loop
(uvloop) and sends back one `SessionRecord` per session. Each session streams the same
audio, paced in real time in fixed frames on an absolute schedule (a late frame is
recorded as send lag, never caught up by bursting), then ends it and waits for the end.

- **pipeline**: the mimi protocol to the endpoint, `nict-asr` v2 with `temporary=true;
  temporary_interval=100`. engine_stub's partial text is `bytes=<N>` (audio received so
  far), so a temporary result names the frame that brought the total to N; its latency
  is measured from that frame's send. The endpoint sends a temporary only when at least
  100 ms passed since the last one, so some frames have no visible result: they give no
  sample (the count of samples is reported).
- **direct**: the engine protocol straight to engine_stub: config, binary frames (one
  JSON reply each, matched the same way), then exactly `{"eof" : 1}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing.connection
import random
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from services.common.audio import PCM_BYTES_PER_SECOND, SAMPLE_RATE
from services.common.engine_messages import EOF_MESSAGE, config_message

RECOG_BREAK = '{"command":"recog-break"}'
PIPELINE_OPTIONS = "response_format=v2;temporary=true;temporary_interval=100;progressive=false"
OPEN_TIMEOUT = 60.0
# How long a session may wait for its end after recog-break / eof.
FINISH_TIMEOUT = 30.0


@dataclass(frozen=True)
class Job:
    """One phase's share of sessions for one worker process."""

    mode: str  # "pipeline" or "direct"
    url: str
    sessions: int
    first_index: int  # this worker's sessions are first_index, first_index + stride, ...
    stride: int
    total_sessions: int
    start_at: float  # time.monotonic() (system-wide) of the phase's first session start
    spread_s: float  # session starts spread evenly over this many seconds
    frames: int
    frame_ms: int


@dataclass
class SessionRecord:
    mode: str
    ok: bool = False
    error: str = ""
    handshake_ms: float | None = None
    finish_ms: float | None = None  # recog-break → recog-finished, or eof → final reply
    frames_sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    latency_sent_at: list[float] = field(default_factory=list)  # each sample's frame send time
    started_at: float = 0.0  # monotonic, system-wide: comparable across workers
    streamed_until: float = 0.0  # the last frame's send
    send_lag_ms: float = 0.0  # the latest a frame left after its scheduled time


def make_audio(frames: int, frame_bytes: int) -> bytes:
    """Deterministic noise: engine_stub hashes it and matches no transcript."""
    rng = random.Random(1234)
    return rng.randbytes(frames * frame_bytes)


class _Session:
    def __init__(self, job: Job, audio: bytes, frame_bytes: int) -> None:
        self.job = job
        self.audio = audio
        self.frame_bytes = frame_bytes
        self.sent_at: list[float] = []
        self.record = SessionRecord(job.mode)
        self.ended_at: float | None = None
        self.final_text: str | None = None
        self.finished = asyncio.Event()

    def _match(self, text: str, now: float) -> None:
        """A result `bytes=<N>` answers the frame that brought the total to N."""
        if not text.startswith("bytes="):
            return
        digits = text[6:].split(" ", 1)[0]
        if not digits.isdigit():
            return
        total = int(digits)
        index = total // self.frame_bytes - 1
        if total % self.frame_bytes == 0 and 0 <= index < len(self.sent_at):
            self.record.latencies_ms.append((now - self.sent_at[index]) * 1000)
            self.record.latency_sent_at.append(self.sent_at[index])

    async def _stream(self, ws: ClientConnection, t0: float) -> None:
        period = self.job.frame_ms / 1000
        lag = 0.0
        for i in range(self.job.frames):
            due = t0 + i * period
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = self.audio[i * self.frame_bytes : (i + 1) * self.frame_bytes]
            now = time.monotonic()
            lag = max(lag, now - due)
            self.sent_at.append(now)
            await ws.send(chunk)
        self.record.frames_sent = self.job.frames
        self.record.send_lag_ms = lag * 1000
        self.ended_at = self.record.streamed_until = time.monotonic()
        await ws.send(RECOG_BREAK if self.job.mode == "pipeline" else EOF_MESSAGE)

    async def _read_pipeline(self, ws: ClientConnection) -> None:
        async for message in ws:
            now = time.monotonic()
            reply = json.loads(message)
            status = reply.get("status")
            if status == "error":
                raise SessionFailed("error:" + str(reply.get("error", {}).get("code")))
            response = reply.get("response") or []
            if status == "recog-finished":
                if self.ended_at is not None:
                    self.record.finish_ms = (now - self.ended_at) * 1000
                self.final_text = response[0]["result"] if response else ""
                self.finished.set()
                continue
            for entry in response:
                if not entry.get("determined", True):
                    self._match(entry.get("result", ""), now)

    async def _read_direct(self, ws: ClientConnection) -> None:
        async for message in ws:
            now = time.monotonic()
            reply = json.loads(message)
            if "partial" in reply:
                self._match(reply["partial"], now)
            elif self.ended_at is not None and len(self.sent_at) == self.job.frames:
                # The reply to eof (segments could also answer frames; the stub gives none).
                self.record.finish_ms = (now - self.ended_at) * 1000
                self.final_text = reply.get("text", "")
                self.finished.set()

    async def run(self, start: float) -> SessionRecord:
        job = self.job
        delay = start - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        began = self.record.started_at = time.monotonic()
        headers: dict[str, str] = {}
        if job.mode == "pipeline":
            headers = {
                "x-mimi-process": "nict-asr",
                "x-mimi-input-language": "ja",
                "content-type": f"audio/x-pcm;bit=16;rate={SAMPLE_RATE};channels=1",
                "x-mimi-nict-asr-options": PIPELINE_OPTIONS,
            }
        try:
            async with connect(
                job.url,
                additional_headers=headers,
                compression=None,
                open_timeout=OPEN_TIMEOUT,
                ping_interval=None,
                close_timeout=5,
                max_size=2**20,
            ) as ws:
                self.record.handshake_ms = (time.monotonic() - began) * 1000
                if job.mode == "direct":
                    await ws.send(config_message(SAMPLE_RATE))
                reader = asyncio.create_task(
                    self._read_pipeline(ws) if job.mode == "pipeline" else self._read_direct(ws)
                )
                try:
                    await self._stream(ws, time.monotonic())
                    stop = asyncio.create_task(self.finished.wait())
                    done, _ = await asyncio.wait(
                        {reader, stop}, timeout=FINISH_TIMEOUT, return_when="FIRST_COMPLETED"
                    )
                    stop.cancel()
                    if reader in done and reader.exception() is not None:
                        raise reader.exception()  # type: ignore[misc]
                    if not self.finished.is_set():
                        raise SessionFailed("no_final" if not done else "closed_before_final")
                    # The server closes after the final result; wait for its close (1000).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(reader, 10)
                finally:
                    reader.cancel()
                    with contextlib.suppress(BaseException):
                        await reader
            code = ws.close_code
            if code not in (1000, None):
                raise SessionFailed(f"close_{code}")
            expected = len(self.sent_at) * self.frame_bytes
            if not (self.final_text or "").startswith(f"bytes={expected} "):
                raise SessionFailed("bad_final_text")
            self.record.ok = True
        except SessionFailed as exc:
            self.record.error = str(exc)
        except InvalidStatus as exc:
            self.record.error = f"http_{exc.response.status_code}"
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            self.record.error = f"close_{code}"
        except (OSError, TimeoutError, WebSocketException) as exc:
            self.record.error = type(exc).__name__
        return self.record


class SessionFailed(Exception):
    pass


async def run_job(job: Job) -> list[SessionRecord]:
    frame_bytes = PCM_BYTES_PER_SECOND * job.frame_ms // 1000
    audio = make_audio(job.frames, frame_bytes)
    starts = [
        job.start_at + job.spread_s * (job.first_index + k * job.stride) / job.total_sessions
        for k in range(job.sessions)
    ]
    sessions = [_Session(job, audio, frame_bytes) for _ in range(job.sessions)]
    return list(await asyncio.gather(*(s.run(t) for s, t in zip(sessions, starts, strict=True))))


def worker_main(conn: multiprocessing.connection.Connection) -> None:
    """A worker process: run each Job received on `conn`, answer with its records."""
    import uvloop

    while True:
        message: Any = conn.recv()
        if message is None:
            return
        records = uvloop.run(run_job(message))
        conn.send(records)
