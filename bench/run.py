"""The benchmark run: the stack, the load workers, the ramp, the JSON."""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import multiprocessing
import multiprocessing.connection
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.load import Job, SessionRecord, worker_main
from bench.monitor import Monitor, Usage
from bench.stack import Stack
from bench.stats import summarise

TIERS = ("endpoint", "router", "intermediate")
RELAY_TIERS = TIERS
MODES = ("pipeline", "direct")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    steps: tuple[int, ...]
    ramp: bool  # go on past `steps` (x1.5) until a step fails
    max_streams: int
    duration_s: float  # audio per session, at least; longer when starts are spread longer
    start_rate: float  # sessions started per second (starts spread evenly)
    min_overlap_s: float  # every session of a step streams at once for at least this long
    frame_ms: int
    workers: int
    rounds: int  # pipeline/direct pairs per step, alternating which goes first
    max_added_p99_ms: float
    pause_s: float


def raise_open_files_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


class Workers:
    """Load-generator processes, kept for the whole run."""

    def __init__(self, count: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns: list[multiprocessing.connection.Connection] = []
        self.procs: list[Any] = []
        for i in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child,), name=f"bench-load-{i}")
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [int(p.pid) for p in self.procs]

    def run(self, jobs: Sequence[Job]) -> list[SessionRecord]:
        for conn, job in zip(self.conns, jobs, strict=True):
            conn.send(job)
        records: list[SessionRecord] = []
        for conn in self.conns[: len(jobs)]:
            records.extend(conn.recv())
        return records

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()


def _busy_cpu_s() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


class Bench:
    def __init__(self, plan: Plan, stack: Stack, workers: Workers) -> None:
        self.plan = plan
        self.stack = stack
        self.workers = workers
        groups = {s.name: [s.pid] for s in stack.services}
        groups["client"] = workers.pids
        self.monitor = Monitor(groups)
        self.baseline_rss: dict[str, int] = {}

    def phase(self, mode: str, streams: int) -> dict[str, Any]:
        plan = self.plan
        spread = max(1.0, streams / plan.start_rate)
        duration = max(plan.duration_s, spread + plan.min_overlap_s)
        frames = math.ceil(duration * 1000 / plan.frame_ms)
        url = self.stack.endpoint_url if mode == "pipeline" else self.stack.engine_url
        count = min(plan.workers, streams)
        start_at = time.monotonic() + 0.5
        jobs = [
            Job(
                mode=mode,
                url=url,
                sessions=len(range(w, streams, count)),
                first_index=w,
                stride=count,
                total_sessions=streams,
                start_at=start_at,
                spread_s=spread,
                frames=frames,
                frame_ms=plan.frame_ms,
            )
            for w in range(count)
        ]
        busy0 = _busy_cpu_s()
        self.monitor.start()
        began = time.monotonic()
        records = self.workers.run(jobs)
        wall = time.monotonic() - began
        usage = self.monitor.stop()
        busy = _busy_cpu_s() - busy0
        result = summarise(records)
        ours = sum(u.cpu_s for u in usage.values())
        result |= {
            "mode": mode,
            "streams": streams,
            "audio_s_per_session": frames * plan.frame_ms / 1000,
            "start_spread_s": spread,
            "wall_s": round(wall, 2),
            "cpu_s": {name: round(u.cpu_s, 2) for name, u in usage.items()},
            "cpu_cores": {name: round(u.cpu_s / wall, 3) for name, u in usage.items()},
            # CPU per audio frame streamed: the figure that noise from other work disturbs least.
            "cpu_us_per_frame": {
                name: round(u.cpu_s * 1e6 / max(1, result["frames_sent"]), 1)
                for name, u in usage.items()
            },
            "rss_peak_mib": {name: round(u.rss_peak_bytes / MIB, 1) for name, u in usage.items()},
            "machine_busy_cpu_s": round(busy, 2),
            # CPU used on the machine by anything else (other people's tests, the desktop…)
            "other_cpu_s": round(max(0.0, busy - ours), 2),
            "machine_cores": psutil.cpu_count(),
        }
        dead = self.stack.exited()
        if dead:
            result["errors"] = max(1, result["errors"])
            result["error_kinds"]["service_exited:" + ",".join(dead)] = 1
        result["_usage"] = usage
        return result

    def warm_up(self) -> None:
        for mode in MODES:
            self.phase(mode, 20)
        time.sleep(self.plan.pause_s)
        self.baseline_rss = self.monitor.rss_now()

    def step(self, streams: int) -> dict[str, Any]:
        merged: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
        for r in range(self.plan.rounds):
            order = MODES if r % 2 == 0 else MODES[::-1]
            for mode in order:
                merged[mode].append(self.phase(mode, streams))
                time.sleep(self.plan.pause_s)
        return self._step_result(streams, merged)

    def _step_result(self, streams: int, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        # With several rounds, each mode's figures are those of its worst round.
        pipeline = max(runs["pipeline"], key=lambda p: p["latency_ms"]["p99"] or math.inf)
        direct = max(runs["direct"], key=lambda p: p["latency_ms"]["p99"] or math.inf)
        errors = sum(p["errors"] for ps in runs.values() for p in ps)
        usage: dict[str, Usage] = pipeline.pop("_usage")
        direct.pop("_usage")
        for ps in runs.values():
            for p in ps:
                p.pop("_usage", None)
        p99p, p99d = pipeline["latency_ms"]["p99"], direct["latency_ms"]["p99"]
        p50p, p50d = pipeline["latency_ms"]["p50"], direct["latency_ms"]["p50"]
        added = round(p99p - p99d, 2) if p99p is not None and p99d is not None else None
        tiers_cpu = sum(pipeline["cpu_s"][t] for t in TIERS)
        floor_cpu = direct["cpu_s"]["client"] + direct["cpu_s"]["engine"]
        per_session = {
            t: round((usage[t].rss_peak_bytes - self.baseline_rss.get(t, 0)) / streams / 1024, 1)
            for t in RELAY_TIERS
        }
        held = errors == 0 and added is not None and added <= self.plan.max_added_p99_ms
        return {
            "streams": streams,
            "errors": errors,
            "pipeline_p50_ms": p50p,
            "pipeline_p99_ms": p99p,
            "direct_p50_ms": p50d,
            "direct_p99_ms": p99d,
            "p50_added_latency_ms": round(p50p - p50d, 2)
            if p50p is not None and p50d is not None
            else None,
            "p99_added_latency_ms": added,
            "held": held,
            "tiers_cpu_s": round(tiers_cpu, 2),
            "floor_cpu_s": round(floor_cpu, 2),
            "tiers_cpu_over_floor": round(tiers_cpu / floor_cpu, 2) if floor_cpu else None,
            "rss_per_session_kib": per_session,
            "cpu_s_pipeline": pipeline["cpu_s"],
            "cpu_s_direct": direct["cpu_s"],
            "rss_peak_mib_pipeline": pipeline["rss_peak_mib"],
            "pipeline": pipeline,
            "direct": direct,
            "rounds": {m: ps for m, ps in runs.items()} if self.plan.rounds > 1 else None,
        }


def ramp_counts(plan: Plan) -> Iterator[int]:
    last = 0
    for n in plan.steps:
        if n <= plan.max_streams:
            last = n
            yield n
    if plan.ramp:
        n = last
        while True:
            n = int(n * 1.5 / 100) * 100 if n >= 1000 else n * 2
            if n > plan.max_streams:
                return
            yield n


def _line(step: dict[str, Any]) -> str:
    def f(x: object) -> str:
        return "-" if x is None else f"{x}"

    return (
        f"{step['streams']:>6} streams  errors {step['errors']:<3} "
        f"pipeline p50/p99 {f(step['pipeline_p50_ms'])}/{f(step['pipeline_p99_ms'])} ms  "
        f"direct p50/p99 {f(step['direct_p50_ms'])}/{f(step['direct_p99_ms'])} ms  "
        f"added p99 {f(step['p99_added_latency_ms'])} ms  "
        f"tiers/floor CPU {f(step['tiers_cpu_over_floor'])}  "
        f"{'held' if step['held'] else 'NOT HELD'}"
    )


def run(
    plan: Plan, out_dir: Path, log_level: str = "INFO", extra_env: dict[str, str] | None = None
) -> Path:
    nofile = raise_open_files_limit()
    started = datetime.datetime.now(datetime.UTC)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    result: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "machine": {
            "cores": psutil.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "open_files_limit": nofile,
        },
        "plan": asdict(plan),
        "service_env": dict(extra_env or {}),
        "steps": [],
        "max_streams_held": 0,
    }
    workers = Workers(plan.workers)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="kikimimi-bench-") as tmp,
            Stack(Path(tmp), log_level, extra_env) as stack,
        ):
            bench = Bench(plan, stack, workers)
            print(f"stack up; warming up; results → {out}", flush=True)
            bench.warm_up()
            result["baseline_rss_mib"] = {
                k: round(v / MIB, 1) for k, v in bench.baseline_rss.items()
            }
            for streams in ramp_counts(plan):
                step = bench.step(streams)
                result["steps"].append(step)
                if step["held"]:
                    result["max_streams_held"] = max(result["max_streams_held"], streams)
                result["finished"] = datetime.datetime.now(datetime.UTC).isoformat(
                    timespec="seconds"
                )
                out.write_text(json.dumps(result, indent=1) + "\n")
                print(_line(step), flush=True)
                if (plan.ramp and not step["held"]) or stack.exited():
                    break
    finally:
        workers.close()
    if result["steps"]:
        from bench.report import cpu_table, table

        print("\n" + table(result) + "\n\nCPU per audio frame (µs):\n" + cpu_table(result))
    print(f"max streams held: {result['max_streams_held']}  ({out})", flush=True)
    return out
