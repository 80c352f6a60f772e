"""kubectl plugins, pinned through a kubeconfig that holds nothing but the environment.

kubectl refuses flags before a plugin's name (`Error: flags cannot be placed before plugin
name`), and a plugin acts on the kubeconfig's current context anyway (`kubectl ns` and
`kubectl ctx` even change it). So a plugin runs with `KUBECONFIG` set to a private,
temporary kubeconfig made by `kubectl config view --minify --flatten --context <context>`:
the environment's context, cluster and user only, its namespace set, current. Whatever the
plugin does to that file is lost when it ends; no other cluster is reachable through it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from typing import Any

from services.ops.environments import Environment

KUBECONFIG_TIMEOUT_S = 30.0


class PluginError(Exception):
    pass


def pinned_kubeconfig(environment: Environment) -> dict[str, Any]:
    """The kubeconfig of the environment's context alone, its namespace set."""
    argv = ["kubectl", "config", "view", "--minify", "--flatten"]
    argv += ["--context", environment.context, "-o", "json"]
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=KUBECONFIG_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PluginError(f"cannot read the kubeconfig: {exc}") from None
    if result.returncode != 0:
        raise PluginError(f"cannot read the kubeconfig: {result.stderr.strip()}")
    try:
        config: dict[str, Any] = json.loads(result.stdout)
        [context] = config["contexts"]
    except (ValueError, KeyError) as exc:
        raise PluginError(f"kubectl config view gave no single context ({exc})") from None
    if context.get("name") != environment.context:
        raise PluginError(f"kubectl config view gave context {context.get('name')!r}")
    context.setdefault("context", {})["namespace"] = environment.namespace
    config["current-context"] = environment.context
    return config


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run_plugin(environment: Environment, args: list[str]) -> int:
    """Run `kubectl ARGS…` (a plugin) on the pinned kubeconfig; its exit status."""
    config = pinned_kubeconfig(environment)
    with tempfile.TemporaryDirectory(prefix="kikimimi-kube-") as private:
        path = os.path.join(private, "kubeconfig")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(config, file)
        env = {**os.environ, "KUBECONFIG": path}
        # The terminal sends Ctrl-C to the plugin too; the wrapper only waits for it to end.
        # SIGTERM ends the wrapper through SystemExit: subprocess kills the plugin, and the
        # private directory is removed on the way out.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            status = subprocess.run(["kubectl", *args], env=env, check=False).returncode
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return 128 - status if status < 0 else status
