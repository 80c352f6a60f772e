"""A fake `kubectl` on PATH that records its argv, and an environments file for it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
KUBE = [sys.executable, "-m", "services.ops.kube"]
MODELS = [sys.executable, "-m", "services.ops.models"]


def models(
    root: Path | None, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`kikimimi-models [--root ROOT] ARGS…` as a process, from the repository root."""
    where = ["--root", str(root)] if root is not None else []
    return subprocess.run(
        [*MODELS, *where, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
        check=False,
    )


ENVIRONMENTS = """\
dev:
  context: kind-dev
  namespace: kikimimi-dev
  production: false
  overlay: k8s/overlays/dev
prod:
  context: gke_p_asia-northeast1_prod
  namespace: kikimimi
  production: true
  overlay: k8s/overlays/prod
"""

FAKE_KUBECTL = """\
#!{python}
# Records its argv (without argv[0]) as one JSON line (and the $KUBECONFIG it sees), prints
# $FAKE_KUBECTL_STDOUT's content (or says it ran) and exits with $FAKE_KUBECTL_EXIT.
# `config view --minify --flatten --context X` gives a kubeconfig of X alone; `kustomize`
# (local rendering, no cluster) is the real kubectl's.
import json, os, sys
if sys.argv[1:2] == ["kustomize"]:
    os.execv({real!r}, [{real!r}, *sys.argv[1:]])
with open(os.environ["FAKE_KUBECTL_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if "KUBECONFIG" in os.environ:  # what a plugin would see
    config = json.load(open(os.environ["KUBECONFIG"]))
    with open(os.environ["FAKE_KUBECTL_LOG"] + ".kubeconfig", "a") as log:
        log.write(json.dumps(dict(path=os.environ["KUBECONFIG"], config=config)) + "\\n")
if sys.argv[1:5] == ["config", "view", "--minify", "--flatten"]:
    name = sys.argv[sys.argv.index("--context") + 1]
    context = dict(name=name, context=dict(cluster=name, user=name))
    config = dict(
        kind="Config",
        clusters=[dict(name=name, cluster=dict(server="https://x"))],
        users=[dict(name=name, user=dict(token="t"))],
        contexts=[context],
    )
    config["current-context"] = "other"
    print(json.dumps(config))
    sys.exit(0)
if "FAKE_KUBECTL_SLEEP" in os.environ:
    import time
    time.sleep(float(os.environ["FAKE_KUBECTL_SLEEP"]))
if "FAKE_KUBECTL_PIDFILE" in os.environ:
    open(os.environ["FAKE_KUBECTL_PIDFILE"], "w").write(str(os.getpid()))
stdout = os.environ.get("FAKE_KUBECTL_STDOUT")
print(open(stdout).read() if stdout else "fake kubectl ran", flush=True)
sys.exit(int(os.environ.get("FAKE_KUBECTL_EXIT", "0")))
"""


@dataclass
class FakeKube:
    """Runs kikimimi-kube with the fake kubectl first on PATH."""

    env: dict[str, str]
    log: Path
    environments: Path

    def kubeconfigs(self) -> list[dict[str, Any]]:
        """The KUBECONFIG (path and content) of each call that had one."""
        path = Path(f"{self.log}.kubeconfig")
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def run(self, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """Without a controlling terminal (a new session), as from CI or a pipe."""
        return subprocess.run(
            [*KUBE, *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            start_new_session=True,
            check=False,
        )


@pytest.fixture
def fake_kube(tmp_path: Path) -> FakeKube:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    real = shutil.which("kubectl") or "/nonexistent/kubectl"
    kubectl.write_text(textwrap.dedent(FAKE_KUBECTL.format(python=sys.executable, real=real)))
    kubectl.chmod(0o755)
    environments = tmp_path / "environments.yaml"
    environments.write_text(ENVIRONMENTS)
    log = tmp_path / "kubectl-calls.jsonl"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_KUBECTL_LOG": str(log),
        "KIKIMIMI_KUBE_ENVIRONMENTS": str(environments),
        "PYTHONPATH": str(ROOT),
    }
    return FakeKube(env, log, environments)
