"""python -m bench.sizing --streams-per-pod N: requests and limits per tier from measurements.

The relay tiers (endpoint, router, intermediate) are sized from the benchmark's runs
(bench/results/*.json, docs/benchmarks.md): CPU per stream from the CPU each tier spent
per audio frame, memory per session from its peak RSS growth per session, over every
step that held (p99 added ≤ the target, no error) with the default settings on a quiet
machine; the worst figure of those steps is used. The router also holds each session's
audio for failover, up to ROUTER_FAILOVER_BUFFER_SECONDS (the benchmark's sessions were
only 6 s long), so its memory per session is the run without the buffer plus the full
buffer. The engines (Whisper base, one sidecar per language: ja and en) are sized from
the Whisper engine's measurements (docs/engines.md; docs/deploy.md, "Sizing").

    request = what N streams need * (1 + headroom)
    CPU limit: relay tiers 1 core (one Python process; room for bursts of session starts);
               the engine: = request (dedicated cores, docs/engines.md)
    memory limit: 2 * request (an OOM kill ends every session of the pod)
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.audio import PCM_BYTES_PER_SECOND

RESULTS = Path(__file__).resolve().parent / "results"
RELAY_TIERS = ("endpoint", "router", "intermediate")
# The benchmark's audio: 16 kHz, 16-bit mono (what the router buffers per second).
# A step counts only when the machine was otherwise idle (other processes' CPU, cores).
MAX_OTHER_LOAD_CORES = 0.1

# The Whisper base engine (int8, ENGINE_THREADS=1), the worst of its measurements
# (docs/engines.md, "Whisper measurements"; docs/deploy.md, "Sizing"): CPU seconds per
# second of audio of one real-time session with a partial every second (en, 1 session:
# 0.22; ja, 4 sessions: 0.133), RSS of an idle engine (model, VAD, warm-up: 315.7 MiB,
# `tests.engine.bench_engine --language ja`), and what each open session adds (~9 MB:
# 8 sessions, 274 → 347 MB PSS, decode workspaces included). Both languages load the same
# model and run the same code, so one set of figures sizes both sidecars.
WHISPER_CPU_PER_STREAM = 0.22
WHISPER_IDLE_RSS_MIB = 316.0
WHISPER_RSS_PER_SESSION_MIB = 9.0
ENGINE_LANGUAGES = ("ja", "en")


@dataclass(frozen=True)
class Measured:
    """One tier's worst figures over the steps used."""

    cpu_us_per_frame: float
    rss_per_session_kib: float
    idle_rss_mib: float


@dataclass(frozen=True)
class Size:
    tier: str
    streams: int
    cpu_per_stream_m: float
    memory_per_session_kib: float
    idle_mib: float
    cpu_request_m: int
    cpu_limit_m: int
    memory_request_mi: int
    memory_limit_mi: int

    def resources_yaml(self) -> str:
        return (
            "resources:\n"
            f"  requests:\n    cpu: {_cpu(self.cpu_request_m)}\n"
            f"    memory: {self.memory_request_mi}Mi\n"
            f"  limits:\n    cpu: {_cpu(self.cpu_limit_m)}\n"
            f"    memory: {self.memory_limit_mi}Mi\n"
        )


def _cpu(millicores: int) -> str:
    return f'"{millicores // 1000}"' if millicores % 1000 == 0 else f"{millicores}m"


def _round_up(value: float, step: int) -> int:
    return max(step, math.ceil(value / step) * step)


def _other_load(step: dict[str, Any]) -> float:
    phases = [step["pipeline"], step["direct"]]
    return max(float(p["other_cpu_s"]) / float(p["wall_s"]) for p in phases)


def usable_steps(results: dict[Path, dict[str, Any]]) -> list[tuple[Path, dict[str, Any]]]:
    """Held steps of pipeline runs (`make bench`; the engine bench and the soak write their
    own kinds of result beside them) with the default settings on a quiet machine."""
    return [
        (path, step)
        for path, result in sorted(results.items())
        if "steps" in result and not result.get("service_env")
        for step in result["steps"]
        if step["held"] and _other_load(step) <= MAX_OTHER_LOAD_CORES
    ]


def measured(
    steps: list[tuple[Path, dict[str, Any]]], results: dict[Path, dict[str, Any]], tier: str
) -> Measured:
    return Measured(
        cpu_us_per_frame=max(s["pipeline"]["cpu_us_per_frame"][tier] for _, s in steps),
        rss_per_session_kib=max(s["rss_per_session_kib"][tier] for _, s in steps),
        idle_rss_mib=max(results[p]["baseline_rss_mib"][tier] for p, _ in steps),
    )


def router_without_buffer(results: dict[Path, dict[str, Any]]) -> float | None:
    """The router's worst memory per session in held runs with the failover buffer off."""
    figures = [
        step["rss_per_session_kib"]["router"]
        for result in results.values()
        if result.get("service_env") == {"ROUTER_FAILOVER_BUFFER_SECONDS": "0"}
        for step in result["steps"]
        if step["held"] and _other_load(step) <= MAX_OTHER_LOAD_CORES
    ]
    return max(figures) if figures else None


def size(
    tier: str,
    streams: int,
    cpu_per_stream_m: float,
    memory_per_session_kib: float,
    idle_mib: float,
    headroom: float,
    dedicated: bool = False,
) -> Size:
    cpu_request = _round_up(streams * cpu_per_stream_m * (1 + headroom), 10)
    memory_request = _round_up(
        (idle_mib + streams * memory_per_session_kib / 1024) * (1 + headroom), 16
    )
    if dedicated:
        cpu_request = _round_up(cpu_request, 1000)
        cpu_limit = cpu_request
    else:
        cpu_limit = max(1000, cpu_request)
    return Size(
        tier,
        streams,
        cpu_per_stream_m,
        memory_per_session_kib,
        idle_mib,
        cpu_request,
        cpu_limit,
        memory_request,
        2 * memory_request,
    )


def sizing(
    results: dict[Path, dict[str, Any]],
    streams_per_pod: int,
    intermediate_streams: int,
    engine_streams: int,
    headroom: float,
    frame_ms: float,
    failover_buffer_s: float,
) -> tuple[list[Size], list[tuple[Path, dict[str, Any]]]]:
    steps = usable_steps(results)
    if not steps:
        raise SystemExit(
            "no usable benchmark step: none held with the default settings on a quiet "
            f"machine (other load ≤ {MAX_OTHER_LOAD_CORES} cores); run `make bench` first"
        )
    frames_per_second = 1000.0 / frame_ms
    sizes = []
    for tier in RELAY_TIERS:
        figures = measured(steps, results, tier)
        per_session = figures.rss_per_session_kib
        if tier == "router":
            unbuffered = router_without_buffer(results)
            buffer_kib = failover_buffer_s * PCM_BYTES_PER_SECOND / 1024
            if unbuffered is not None:
                per_session = max(per_session, unbuffered + buffer_kib)
            else:
                per_session += buffer_kib
        streams = intermediate_streams if tier == "intermediate" else streams_per_pod
        cpu_m = figures.cpu_us_per_frame * frames_per_second / 1000
        sizes.append(size(tier, streams, cpu_m, per_session, figures.idle_rss_mib, headroom))
    sizes.extend(
        size(
            f"engine-{language} (Whisper base)",
            engine_streams,
            WHISPER_CPU_PER_STREAM * 1000,
            WHISPER_RSS_PER_SESSION_MIB * 1024,
            WHISPER_IDLE_RSS_MIB,
            headroom,
            dedicated=True,
        )
        for language in ENGINE_LANGUAGES
    )
    return sizes, steps


def table(sizes: list[Size]) -> str:
    rows = [
        "| tier | streams per pod | CPU per stream (m) | memory per session | idle memory (MiB) "
        "| CPU request / limit | memory request / limit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in sizes:
        per_session = (
            f"{s.memory_per_session_kib / 1024:.1f} MiB"
            if s.memory_per_session_kib >= 1024
            else f"{s.memory_per_session_kib:.0f} KiB"
        )
        rows.append(
            f"| {s.tier} | {s.streams} | {s.cpu_per_stream_m:.1f} | {per_session} "
            f"| {s.idle_mib:.0f} | {_cpu(s.cpu_request_m).strip(chr(34))} / "
            f"{_cpu(s.cpu_limit_m).strip(chr(34))} | {s.memory_request_mi}Mi / "
            f"{s.memory_limit_mi}Mi |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sizing",
        description=__doc__.split("\n")[0] if __doc__ else None,
        epilog="docs/deploy.md, 'Sizing', has the table and the run it came from.",
    )
    parser.add_argument(
        "--streams-per-pod", type=int, required=True, help="streams per endpoint / router pod"
    )
    parser.add_argument(
        "--intermediate-streams",
        type=int,
        default=4,
        help="streams per intermediate pod: its engine's capacity (ENGINE_CAPACITY)",
    )
    parser.add_argument(
        "--engine-streams", type=int, default=4, help="ENGINE_CAPACITY of each engine"
    )
    parser.add_argument("--headroom", type=float, default=0.5, help="over the measured need")
    parser.add_argument(
        "--frame-ms", type=float, default=100.0, help="the clients' audio frame length"
    )
    parser.add_argument(
        "--failover-buffer-seconds",
        type=float,
        default=60.0,
        help="ROUTER_FAILOVER_BUFFER_SECONDS of the router",
    )
    parser.add_argument("results", type=Path, nargs="*", help="runs (default bench/results/)")
    args = parser.parse_args()
    for name in ("streams_per_pod", "intermediate_streams", "engine_streams"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.headroom < 0 or args.frame_ms <= 0 or args.failover_buffer_seconds < 0:
        parser.error("--headroom and --failover-buffer-seconds ≥ 0, --frame-ms > 0")
    paths = args.results or sorted(RESULTS.glob("*.json"))
    results = {path: json.loads(path.read_text()) for path in paths}
    sizes, steps = sizing(
        results,
        args.streams_per_pod,
        args.intermediate_streams,
        args.engine_streams,
        args.headroom,
        args.frame_ms,
        args.failover_buffer_seconds,
    )
    used: dict[str, list[str]] = {}
    for path, step in steps:
        used.setdefault(path.name, []).append(str(step["streams"]))
    print(
        f"Sizing for {args.streams_per_pod} streams per endpoint/router pod, "
        f"{args.intermediate_streams} per intermediate, {args.engine_streams} per engine; "
        f"headroom {args.headroom:.0%}; {args.frame_ms:g} ms audio frames; router failover "
        f"buffer {args.failover_buffer_seconds:g} s."
    )
    print(
        "From the held steps (streams) of "
        + "; ".join(f"{name}: {', '.join(s)}" for name, s in used.items())
        + " and docs/engines.md (engine).\n"
    )
    print(table(sizes))
    for s in sizes:
        if s.cpu_request_m > 1000 and not s.tier.startswith("engine"):
            print(
                f"\nwarning: {s.tier} needs more than one core at {s.streams} streams; one "
                "Python process queues above one core: fewer streams per pod"
            )
    print()
    for s in sizes:
        print(f"# {s.tier}\n{s.resources_yaml()}")


if __name__ == "__main__":
    main()
