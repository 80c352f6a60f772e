"""Measure an engine: load time, memory, real-time factor, concurrent sessions.

Not a test (pytest does not collect it; it takes minutes). Run from the repository root:

    .venv/bin/python -m tests.engine.bench_engine            # pocketsphinx, 1..8 sessions
    .venv/bin/python -m tests.engine.bench_engine --max 4    # fewer concurrency steps
    .venv/bin/python -m tests.engine.bench_engine --recognizer whisper --language ja \
        --env ENGINE_MAX_BATCH=1                              # Whisper, with a setting

Each step starts a fresh engine (ENGINE_CAPACITY = sessions, ENGINE_WORKERS = cores),
streams N sessions of flite speech at real time (100 ms frames, sent on the clock without
waiting for replies, as a live client would), sends eof right after the last frame, and
reports eof → final latency, how far replies lagged behind the audio, and memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # dev dependency without stubs
from websockets.asyncio.client import connect

from tests.engine.engine_helpers import EOF_TEXT, RATE, frames, speak
from tests.procs import Service, free_port, start_service

SENTENCES = [
    ("rms", "please open the window and turn off the lights in the kitchen"),
    ("slt", "the weather will be sunny tomorrow with a light wind from the north"),
    ("rms", "i would like to book a table for two people at seven o'clock"),
    ("slt", "can you tell me how to get to the nearest train station"),
    ("rms", "we need to buy milk bread and eggs before the store closes"),
]
FRAME = 3200  # 100 ms
JA_FIXTURE = Path(__file__).parents[1] / "fixtures" / "ja-chotto-osoi-chushoku.raw"
ENGINE_ENV: dict[str, str] = {}  # set from the command line


@dataclass
class Run:
    final_latency: float
    max_lag: float  # how late the last reply to a frame came, after that frame's real time
    audio: float
    # Per determined segment: its last word's end (in real time) → the segment received.
    segment_latencies: list[float]
    first_partial: float | None  # session start → first non-empty partial


def memory(service: Service) -> dict[str, float]:
    """MiB: RSS and PSS (shared pages split between processes) of the engine's processes."""
    main = psutil.Process(service.proc.pid)
    procs = [main, *main.children(recursive=True)]
    info = [p.memory_full_info() for p in procs]
    mib = 1 << 20
    return {
        "processes": len(procs),
        "rss_mib": round(sum(i.rss for i in info) / mib, 1),
        "pss_mib": round(sum(i.pss for i in info) / mib, 1),
        "main_pss_mib": round(info[0].pss / mib, 1),
        "worker_pss_mib": round(statistics.mean(i.pss for i in info[1:]) / mib, 1)
        if info[1:]
        else None,
    }


def cpu_seconds(service: Service) -> float:
    """CPU time (user + system) of the engine's processes: unlike wall time, it does not
    grow when other programs compete for the cores."""
    main = psutil.Process(service.proc.pid)
    total = 0.0
    for proc in [main, *main.children(recursive=True)]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


async def session(url: str, pcm: bytes, delay: float) -> Run:
    await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    chunks = frames(pcm, FRAME)
    due: list[float] = []
    lags: list[float] = []
    async with connect(url, open_timeout=30) as ws:
        await ws.send(json.dumps({"config": {"sample_rate": RATE, "words": 1}}))
        start = loop.time()

        async def send() -> float:
            for i, chunk in enumerate(chunks):
                at = start + (i + 1) * FRAME / 2 / RATE  # the frame's audio has been spoken
                await asyncio.sleep(max(0.0, at - loop.time()))
                due.append(at)
                await ws.send(chunk)
            sent = loop.time()
            await ws.send(EOF_TEXT)
            return sent

        segments: list[float] = []
        first_partial: float | None = None

        def heard(reply: dict[str, object]) -> None:
            nonlocal first_partial
            words = reply.get("result")
            if isinstance(words, list) and words:
                segments.append(loop.time() - (start + float(words[-1]["end"])))
            if reply.get("partial") and first_partial is None:
                first_partial = loop.time() - start

        sender = asyncio.create_task(send())
        for i in range(len(chunks)):
            heard(json.loads(await ws.recv()))
            lags.append(loop.time() - due[i])
        heard(json.loads(await ws.recv()))
        final_at = loop.time()
        eof_at = await sender
    return Run(final_at - eof_at, max(lags), len(pcm) / 2 / RATE, segments, first_partial)


async def load(url: str, pcm: bytes, sessions: int) -> list[Run | BaseException]:
    rng = random.Random(sessions)
    return await asyncio.gather(
        *(session(url, pcm, rng.uniform(0, 2)) for _ in range(sessions)), return_exceptions=True
    )


def start_engine(capacity: int) -> tuple[Service, float]:
    port = free_port()
    env = {"ENGINE_PORT": str(port), "ENGINE_CAPACITY": str(capacity), "ENGINE_LOG_FORMAT": "json"}
    env |= ENGINE_ENV
    began = time.monotonic()
    service = start_service("engine-bench", "services.engine", env, wait_port=port, timeout=120)
    service.ports["ws"] = port
    return service, time.monotonic() - began


def summaries(service: Service) -> list[dict[str, object]]:
    lines = [json.loads(x) for x in service.log_text().splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("summary")]


def single(pcm: bytes) -> None:
    """Load time, idle memory and the real-time factor of one session decoding as fast as
    it can (frames sent unpaced, each after the previous reply)."""
    service, startup = start_engine(1)
    try:
        url = f"ws://127.0.0.1:{service.ports['ws']}"
        idle = memory(service)

        async def unpaced() -> float:
            async with connect(url) as ws:
                began = time.monotonic()
                for chunk in frames(pcm, FRAME):
                    await ws.send(chunk)
                    await ws.recv()
                await ws.send(EOF_TEXT)
                await ws.recv()
                return time.monotonic() - began

        cpu = cpu_seconds(service)
        elapsed = asyncio.run(unpaced())
        cpu = cpu_seconds(service) - cpu
        loaded = next(
            json.loads(x) for x in service.log_text().splitlines() if '"model loaded"' in x
        )
        print(
            json.dumps(
                {
                    "capacity": 1,
                    "startup_to_port_s": round(startup, 2),
                    "model_load_s": loaded["load_seconds"],
                    "idle_memory": idle,
                    "unpaced_rtf": round(elapsed / (len(pcm) / 2 / RATE), 3),
                    "cpu_rtf": round(cpu / (len(pcm) / 2 / RATE), 3),
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                }
            )
        )
    finally:
        service.stop()


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--min", type=int, default=1, help="fewest concurrent sessions to try")
    parser.add_argument("--max", type=int, default=8, help="most concurrent sessions to try")
    parser.add_argument("--skip-single", action="store_true", help="skip the unpaced run")
    parser.add_argument("--recognizer", choices=("pocketsphinx", "whisper"), default="pocketsphinx")
    parser.add_argument("--language", choices=("en", "ja"), default="en")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the engine")
    args = parser.parse_args()
    ENGINE_ENV.update({"ENGINE_RECOGNIZER": args.recognizer, "ENGINE_LANGUAGE": args.language})
    ENGINE_ENV.update(dict(item.split("=", 1) for item in args.env))
    silence = bytes(2 * RATE // 2)
    if args.language == "ja":  # the fixture, four times, a second of silence between
        pcm = (JA_FIXTURE.read_bytes() + silence + silence) * 4
    else:
        with tempfile.TemporaryDirectory() as tmp:
            pcm = b"".join(silence + speak(t, v, Path(tmp)) for v, t in SENTENCES) + silence
    print(json.dumps({"engine": ENGINE_ENV}))
    print(f"cores: {os.cpu_count()}, audio per session: {len(pcm) / 2 / RATE:.1f} s")

    if not args.skip_single:
        single(pcm)
    for sessions in range(args.min, args.max + 1):
        service, _ = start_engine(sessions)
        try:
            url = f"ws://127.0.0.1:{service.ports['ws']}"
            idle = memory(service)
            cpu = cpu_seconds(service)
            results = asyncio.run(load(url, pcm, sessions))
            cpu = cpu_seconds(service) - cpu
        finally:
            service.stop()
        runs = [r for r in results if isinstance(r, Run)]
        failed = [repr(r) for r in results if not isinstance(r, Run)]
        latencies = sorted(r.final_latency for r in runs) or [-0.001]  # -1: none finished
        segment_latencies = sorted(x for r in runs for x in r.segment_latencies) or [-0.001]
        first_partials = [r.first_partial for r in runs if r.first_partial is not None]
        print(
            json.dumps(
                {
                    "sessions": sessions,
                    "failed": failed,
                    "final_latency_ms_median": round(statistics.median(latencies) * 1000),
                    "final_latency_ms_max": round(latencies[-1] * 1000),
                    "segments": len(segment_latencies),
                    "segment_latency_ms_p50": round(_quantile(segment_latencies, 0.5) * 1000),
                    "segment_latency_ms_p95": round(_quantile(segment_latencies, 0.95) * 1000),
                    "first_partial_ms_median": round(statistics.median(first_partials) * 1000)
                    if first_partials
                    else None,
                    "reply_lag_ms_max": round(max([r.max_lag for r in runs] or [0]) * 1000),
                    "engine_rtf_per_session": [s["real_time_factor"] for s in summaries(service)],
                    "cpu_rtf": round(cpu / (sessions * len(pcm) / 2 / RATE), 3),
                    "idle_memory": idle,
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
