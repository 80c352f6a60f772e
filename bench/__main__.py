"""python -m bench [--quick]: see docs/benchmarks.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.run import Plan, run

RAMP = (50, 100, 200, 400, 800, 1000, 1500)
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one step: 200 streams (< 2 min)")
    parser.add_argument(
        "--streams", help="comma-separated stream counts instead of the ramp (no extension)"
    )
    parser.add_argument("--max-streams", type=int, default=5000)
    parser.add_argument("--duration", type=float, default=6.0, help="audio seconds per session")
    parser.add_argument("--start-rate", type=float, default=400.0, help="session starts per second")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--rounds", type=int, default=1, help="pipeline/direct pairs per step")
    parser.add_argument("--max-added-p99-ms", type=float, default=50.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--log-level", default="INFO", help="the services' log level")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra setting for the services, e.g. ROUTER_FAILOVER_BUFFER_SECONDS=0",
    )
    args = parser.parse_args()
    steps: tuple[int, ...]
    if args.quick:
        steps, ramp = (200,), False
    elif args.streams:
        steps, ramp = tuple(int(x) for x in args.streams.split(",")), False
    else:
        steps, ramp = RAMP, True
    plan = Plan(
        steps=steps,
        ramp=ramp,
        max_streams=args.max_streams,
        duration_s=args.duration,
        start_rate=args.start_rate,
        min_overlap_s=4.0,
        frame_ms=100,
        workers=args.workers,
        rounds=args.rounds,
        max_added_p99_ms=args.max_added_p99_ms,
        pause_s=2.0,
    )
    extra_env = dict(item.split("=", 1) for item in args.env)
    run(plan, args.out, args.log_level, extra_env)


if __name__ == "__main__":
    main()
