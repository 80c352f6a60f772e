"""python -m bench.report RESULT.json [--png PATH]: the Markdown table and the plot of a run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

TIERS = ("endpoint", "router", "intermediate")


def _f(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(result: dict[str, Any]) -> str:
    """One row per step: latency side by side, CPU and memory of the tiers."""
    rows = [
        "| streams | errors | pipeline p50 / p99 ms | direct p50 / p99 ms | added p99 ms "
        "| tiers CPU (cores) | floor CPU (cores) | tiers / floor | RSS per session KiB "
        "(endpoint / router / intermediate) | other load (cores) | held |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for s in result["steps"]:
        p, d = s["pipeline"], s["direct"]
        tiers_cores = sum(p["cpu_cores"][t] for t in TIERS)
        floor_cores = d["cpu_cores"]["client"] + d["cpu_cores"]["engine"]
        other = (p["other_cpu_s"] / p["wall_s"] + d["other_cpu_s"] / d["wall_s"]) / 2
        rss = " / ".join(_f(s["rss_per_session_kib"][t], 0) for t in TIERS)
        rows.append(
            f"| {s['streams']} | {s['errors']} "
            f"| {_f(s['pipeline_p50_ms'])} / {_f(s['pipeline_p99_ms'])} "
            f"| {_f(s['direct_p50_ms'])} / {_f(s['direct_p99_ms'])} "
            f"| {_f(s['p99_added_latency_ms'])} "
            f"| {tiers_cores:.2f} | {floor_cores:.2f} | {_f(s['tiers_cpu_over_floor'], 2)} "
            f"| {rss} | {other:.2f} | {'yes' if s['held'] else '**no**'} |"
        )
    return "\n".join(rows)


def cpu_table(result: dict[str, Any]) -> str:
    """CPU per audio frame (µs) of every process, pipeline and direct."""
    names = ("client", "endpoint", "router", "intermediate", "engine")
    rows = [
        "| streams | mode | " + " | ".join(names) + " |",
        "| ---: | --- |" + " ---: |" * len(names),
    ]
    for s in result["steps"]:
        for mode in ("pipeline", "direct"):
            per = s[mode]["cpu_us_per_frame"]
            rows.append(
                f"| {s['streams']} | {mode} | " + " | ".join(f"{per[n]:.0f}" for n in names) + " |"
            )
    return "\n".join(rows)


def merged(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The steps of several runs as one run (sorted by streams), for one plot."""
    steps = sorted((s for r in results for s in r["steps"]), key=lambda s: int(s["streams"]))
    return {**results[0], "steps": steps}


def plot(result: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    x = [s["streams"] for s in steps]
    fig, (lat, cpu) = plt.subplots(1, 2, figsize=(12, 4.5))
    for mode, colour in (("pipeline", "tab:red"), ("direct", "tab:blue")):
        lat.plot(x, [s[f"{mode}_p99_ms"] for s in steps], "o-", color=colour, label=f"{mode} p99")
        lat.plot(x, [s[f"{mode}_p50_ms"] for s in steps], "o--", color=colour, label=f"{mode} p50")
    lat.axhline(50, color="grey", lw=0.8, ls=":")
    lat.set_yscale("log")
    lat.set_xlabel("concurrent real-time streams")
    lat.set_ylabel("audio frame → result latency (ms, log)")
    lat.set_title("latency: pipeline vs direct engine")
    lat.legend()
    lat.grid(alpha=0.3)

    def cores(mode: str, names: tuple[str, ...]) -> list[float]:
        return [sum(s[mode]["cpu_cores"][n] for n in names) for s in steps]

    cpu.plot(x, cores("pipeline", TIERS), "o-", color="tab:red", label="pipeline: three tiers")
    cpu.plot(
        x,
        cores("pipeline", (*TIERS, "client", "engine")),
        "o:",
        color="tab:red",
        label="pipeline: everything",
    )
    cpu.plot(
        x,
        cores("direct", ("client", "engine")),
        "o-",
        color="tab:blue",
        label="direct: client + engine",
    )
    cores_total = result["machine"]["cores"]
    cpu.axhline(cores_total, color="grey", lw=0.8, ls=":", label=f"{cores_total} cores")
    cpu.set_xlabel("concurrent real-time streams")
    cpu.set_ylabel("CPU (cores, busy seconds / wall second)")
    cpu.set_title("CPU: pipeline vs direct engine")
    cpu.legend()
    cpu.grid(alpha=0.3)
    fig.suptitle(
        f"kikimimi bench from {result['started']}: pipeline vs direct on "
        f"{cores_total} cores; steps held: "
        + (", ".join(str(s["streams"]) for s in steps if s["held"]) or "none")
    )
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("results", type=Path, nargs="+", help="one or more runs' JSON")
    parser.add_argument("--png", type=Path, help="write the plot (of every run's steps) here")
    args = parser.parse_args()
    results = [json.loads(path.read_text()) for path in args.results]
    for path, result in zip(args.results, results, strict=True):
        print(f"{path}:\n\n{table(result)}\n\n{cpu_table(result)}\n")
    if args.png:
        plot(merged(results), args.png)
        print(f"plot: {args.png}")


if __name__ == "__main__":
    main()
