"""Fixtures of the offline deployment checks: rendered overlays, compose, tool paths.

The tools (kubernetes-validate, hadolint, checkov, docker compose) live in `.venv-tools`,
made by `.ci/install-tools.sh`. A missing tool fails the test that needs it, naming the
script: these checks are part of `make test`, never silently skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
TOOLS_VENV = Path(os.environ.get("KIKIMIMI_TOOLS_VENV", ROOT / ".venv-tools"))
# The GKE minor version the manifests target (kubernetes-validate schemas).
KUBERNETES_VERSION = "1.34.0"
# The labels of same-namespace monitoring, which may scrape the HTTP ports.
MONITORING_PEER = {"app.kubernetes.io/component": "monitoring"}

Manifest = dict[str, Any]


def tool(name: str) -> Path:
    """The path of a deployment tool, or a failure that says how to install it."""
    if name == "docker-compose":
        path = TOOLS_VENV / "docker-config" / "cli-plugins" / "docker-compose"
    else:
        path = TOOLS_VENV / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `bash .ci/install-tools.sh` (make test does it)")
    return path


def run(args: list[str | Path], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool, capturing its output as text; never raises on a non-zero exit."""
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def render(path: Path) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl (with kustomize) is not on PATH")
    result = run([kubectl, "kustomize", path], timeout=60)
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {path.relative_to(ROOT)} failed:\n{result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class Rendered:
    name: str
    text: str
    docs: list[Manifest]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [d for d in self.docs if d["kind"] == kind]

    def workloads(self) -> list[Manifest]:
        """The Deployments of the kikimimi tiers (warm-spare placeholders left out)."""
        return [d for d in self.of_kind("Deployment") if not is_placeholder(d)]

    def placeholders(self) -> list[Manifest]:
        """The warm-spare Deployments (components/warm-spare)."""
        return [d for d in self.of_kind("Deployment") if is_placeholder(d)]

    def get(self, kind: str, name: str) -> Manifest:
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        raise AssertionError(f"{self.name}: no {kind} named {name}")


WARM_SPARE_PRIORITY_CLASS = "kikimimi-warm-spare"


def is_placeholder(deployment: Manifest) -> bool:
    spec = deployment["spec"]["template"]["spec"]
    return bool(spec.get("priorityClassName") == WARM_SPARE_PRIORITY_CLASS)


_cache: dict[str, Rendered] = {}


def rendered(overlay: str) -> Rendered:
    """The overlay rendered by `kubectl kustomize`, once per session."""
    if overlay not in _cache:
        text = render(K8S / "overlays" / overlay)
        docs = [d for d in yaml.safe_load_all(text) if d]
        _cache[overlay] = Rendered(overlay, text, docs)
    return _cache[overlay]


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> Rendered:
    return rendered(request.param)


@pytest.fixture
def prod() -> Rendered:
    return rendered("prod")


@pytest.fixture
def overlay_file(overlay: Rendered, tmp_path: Path) -> Path:
    path = tmp_path / f"{overlay.name}.yaml"
    path.write_text(overlay.text)
    return path


def compose_env() -> dict[str, str]:
    """The environment for `docker compose`: no daemon needed for `config`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "KIKIMIMI_"))}
    env["DOCKER_CONFIG"] = str(TOOLS_VENV / "docker-config")
    return env


_compose: dict[str, Any] = {}


def run_compose_config(*options: str) -> subprocess.CompletedProcess[str]:
    """`docker compose [options] config --format json` on docker-compose.yaml."""
    return run(
        [tool("docker-compose"), *options, "config", "--format", "json"],
        timeout=60,
        cwd=ROOT,
        env=compose_env(),
    )


def compose_config() -> dict[str, Any]:
    """docker-compose.yaml as compose resolves it (interpolated, anchors merged)."""
    if not _compose:
        result = run_compose_config("--profile", "vosk", "--profile", "stub")
        if result.returncode != 0:
            pytest.fail(f"docker compose config failed:\n{result.stderr}")
        _compose.update(json.loads(result.stdout))
    return _compose


def pod_containers(workload: Manifest) -> list[Manifest]:
    """Every container of a workload's pod template, native sidecars included."""
    spec = workload["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


# Image (without registry and tag) → the Settings class of the service it runs.
SETTINGS = {
    "endpoint": "services.endpoint.config",
    "router": "services.router.config",
    "intermediate": "services.intermediate.config",
    "engine": "services.engine.config",
    "engine-stub": "engine_stub.config",
}


def service_of_image(image: str) -> str:
    """`asia-…/kikimimi/engine-stub:0.1.0` → `engine-stub`; vosk images → `vosk`."""
    name = re.sub(r"[:@].*$", "", image).rsplit("/", 1)[-1]
    if "kaldi" in name:
        return "vosk"
    assert name in SETTINGS, f"unknown image {image}"
    return name
