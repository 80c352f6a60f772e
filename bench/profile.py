"""python -m bench.profile [STREAMS]: py-spy profiles of every tier under pipeline load.

Starts the stack and the load workers as `python -m bench` does, runs one pipeline phase
of STREAMS sessions (default 400) and meanwhile samples each service with `py-spy record`
(non-blocking, so the services are not paused). Writes a flame graph (SVG) and collapsed
stacks per service to bench/results/profiles/, and prints each service's hottest
functions, by self time and by inclusive time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.run import Bench, Plan, Workers, raise_open_files_limit
from bench.stack import Stack

PROFILES = Path(__file__).resolve().parent / "results" / "profiles"
PY_SPY = Path(sys.executable).with_name("py-spy")


def top_functions(collapsed: Path, limit: int = 15) -> tuple[list[str], list[str]]:
    """(by self time, by inclusive time) lines from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] for f in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return [], []

    def fmt(counter: Counter[str]) -> list[str]:
        return [f"{100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(limit)]

    return fmt(own), fmt(inclusive)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("streams", type=int, nargs="?", default=400)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds sampled")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=PROFILES)
    parser.add_argument("--tag", default="", help="suffix of the output files")
    args = parser.parse_args()
    raise_open_files_limit()
    args.out.mkdir(parents=True, exist_ok=True)
    plan = Plan(
        steps=(args.streams,),
        ramp=False,
        max_streams=args.streams,
        duration_s=args.duration + 4,
        start_rate=400.0,
        min_overlap_s=4.0,
        frame_ms=100,
        workers=args.workers,
        rounds=1,
        max_added_p99_ms=50.0,
        pause_s=2.0,
    )
    workers = Workers(args.workers)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="kikimimi-profile-") as tmp,
            Stack(Path(tmp)) as stack,
        ):
            bench = Bench(plan, stack, workers)
            bench.warm_up()
            results: dict[str, object] = {}
            load = threading.Thread(
                target=lambda: results.update(bench.phase("pipeline", args.streams))
            )
            load.start()
            time.sleep(max(1.0, args.streams / plan.start_rate) + 1.0)  # all sessions started
            suffix = f"-{args.tag}" if args.tag else ""
            spies = {}
            for name in ("endpoint", "router", "intermediate", "engine"):
                base = args.out / f"{name}{suffix}"
                spies[name] = [
                    subprocess.Popen(
                        [
                            str(PY_SPY),
                            "record",
                            "--nonblocking",
                            "--pid",
                            str(stack.named(name).pid),
                            "--duration",
                            str(int(args.duration)),
                            "--rate",
                            "50",
                            "--format",
                            fmt,
                            "-o",
                            str(base.with_suffix(ext)),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    for fmt, ext in (("flamegraph", ".svg"), ("raw", ".txt"))
                ]
            for procs in spies.values():
                for proc in procs:
                    proc.wait()
            load.join()
    finally:
        workers.close()
    latency = results.get("latency_ms")
    print(f"pipeline, {args.streams} streams: latency {latency}; cpu_s {results.get('cpu_s')}")
    for name in spies:
        own, inclusive = top_functions(args.out / f"{name}{suffix}.txt")
        print(f"\n== {name}: self time")
        print("\n".join(own))
        print(f"== {name}: inclusive")
        print("\n".join(inclusive))


if __name__ == "__main__":
    main()
