"""python -m bench.sizing: requests and limits from benchmark runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ops.conftest import ROOT

TIERS = ("endpoint", "router", "intermediate", "engine", "client")


def step(streams: int, held: bool, us: float, kib: float, other_cpu_s: float = 0.0) -> Any:
    phase = {
        "cpu_us_per_frame": dict.fromkeys(TIERS, us),
        "other_cpu_s": other_cpu_s,
        "wall_s": 10.0,
    }
    return {
        "streams": streams,
        "held": held,
        "rss_per_session_kib": dict.fromkeys(TIERS, kib),
        "pipeline": phase,
        "direct": phase,
    }


def run(steps: list[Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "service_env": env or {},
        "baseline_rss_mib": dict.fromkeys(TIERS, 100.0),
        "steps": steps,
    }


def sizing(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.sizing", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(60)
def test_requests_follow_the_held_quiet_steps(tmp_path: Path) -> None:
    runs = {
        "a.json": run(
            [
                step(10, True, us=500, kib=100),
                step(20, False, us=9000, kib=9000),  # not held: ignored
                step(30, True, us=9000, kib=9000, other_cpu_s=5.0),  # loaded machine: ignored
            ]
        ),
        "b.json": run([step(10, True, us=9000, kib=40)], {"ROUTER_FAILOVER_BUFFER_SECONDS": "0"}),
    }
    for name, content in runs.items():
        (tmp_path / name).write_text(json.dumps(content))
    result = sizing(
        "--streams-per-pod",
        "10",
        "--intermediate-streams",
        "2",
        "--failover-buffer-seconds",
        "10",
        *(str(tmp_path / n) for n in runs),
    )
    assert result.returncode == 0, result.stderr
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in result.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| tier")
    }
    # 10 streams * 500 µs * 10 frames/s = 50 m, * 1.5 = 75 m → 80 m; memory
    # (100 MiB + 10 * 100 KiB) * 1.5 = 151.5 MiB → 160 Mi, limit twice that.
    assert rows["endpoint"] == ["10", "5.0", "100 KiB", "100", "80m / 1", "160Mi / 320Mi"]
    # The router holds 10 s of 16 kHz audio per session on top of the unbuffered 40 KiB.
    assert rows["router"][2] == f"{40 + 10 * 32000 / 1024:.0f} KiB"
    assert rows["intermediate"][:2] == ["2", "5.0"]
    assert rows["intermediate"][4] == "20m / 1"
    assert "a.json: 10" in result.stdout
    assert "a.json: 10, 30" not in result.stdout


@pytest.mark.timeout(60)
def test_no_usable_run_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "loaded.json"
    path.write_text(json.dumps(run([step(10, True, 500, 100, other_cpu_s=5.0)])))
    result = sizing("--streams-per-pod", "10", str(path))
    assert result.returncode != 0
    assert "no usable benchmark step" in result.stderr


@pytest.mark.timeout(60)
def test_committed_runs_give_the_table_of_docs_deploy() -> None:
    result = sizing("--streams-per-pod", "50")
    assert result.returncode == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for line in table:
        assert line in docs, f"docs/deploy.md lacks the row {line!r}: rerun the command there"


MANIFESTS = {
    "endpoint": ("k8s/base/endpoint/deployment.yaml", "endpoint"),
    "router": ("k8s/base/router/deployment.yaml", "router"),
    "intermediate": ("k8s/base/intermediate/deployment.yaml", "intermediate"),
    "engine-ja (Whisper base)": ("k8s/base/intermediate-ja/engine-sidecar.yaml", "engine"),
    "engine-en (Whisper base)": ("k8s/base/intermediate-en/engine-sidecar.yaml", "engine"),
}


def containers(doc: Any) -> list[Any]:
    """Containers of a Deployment, or of a patch that lists init containers."""
    if isinstance(doc, list):  # a JSON patch: the containers it adds
        values = [op.get("value") for op in doc]
        return [c for v in values for c in (v if isinstance(v, list) else [v]) if c]
    spec = doc["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


@pytest.mark.timeout(60)
def test_manifests_carry_the_computed_resources() -> None:
    import yaml

    from bench import sizing as bench_sizing

    results = {p: json.loads(p.read_text()) for p in sorted(bench_sizing.RESULTS.glob("*.json"))}
    sizes, _ = bench_sizing.sizing(results, 50, 4, 4, 0.5, 100.0, 60.0)
    for size in sizes:
        path, name = MANIFESTS[size.tier]
        docs = list(yaml.safe_load_all((ROOT / path).read_text()))
        found = [c for d in docs if d for c in containers(d) if c.get("name") == name]
        assert len(found) == 1, f"{path}: container {name}"
        expected = yaml.safe_load(size.resources_yaml())["resources"]
        assert found[0]["resources"] == expected, f"{path}: rerun python -m bench.sizing"
