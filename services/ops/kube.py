"""kikimimi-kube ENV KUBECTL-ARGS…: kubectl pinned to one environment.

It runs `kubectl --context <context> --namespace <namespace> KUBECTL-ARGS…` with the
environment's context and namespace before the subcommand, where kubectl reads them
whatever follows (never after a `--`, which belongs to the command run in a container),
and every other argument passed through unchanged, in order. It refuses what would
escape the pin (another context, kubeconfig, cluster, user, server, identity or
namespace; kubeconfig edits). Plugins, which take no flags before their name, run on a
kubeconfig of the environment alone (services/ops/plugin.py). On a production
environment a command that changes or enters something shows a banner and runs only
once the operator has typed the environment's name; without a terminal only
`--yes-i-mean ENV` confirms it.
docs/operations.md is the manual.
"""

from __future__ import annotations

import os
import select
import shlex
import sys
from collections.abc import Sequence
from typing import NoReturn

from services.ops.environments import (
    ENV_VARIABLE,
    Environment,
    EnvironmentsError,
    environments_file,
    load_environments,
)
from services.ops.kubeargs import Refused, check_pin
from services.ops.plugin import PluginError, run_plugin

USAGE = f"""\
usage: kikimimi-kube [--environments FILE] [--yes-i-mean ENV] ENV KUBECTL-ARGS…

Runs kubectl pinned to the environment ENV of the environments file
(deploy/environments.yaml, or --environments FILE, or ${ENV_VARIABLE}).
Options of kikimimi-kube come before ENV; everything after ENV is kubectl's.

  --environments FILE   the environments file
  --yes-i-mean ENV      confirm a production change without a terminal (ENV again)
  -h, --help            this text

Exit status: kubectl's own; 2 when refused (the message says why); 1 when a production
change was not confirmed.
"""

CONFIRM_TIMEOUT_S = 120.0
EXIT_REFUSED = 2
EXIT_NOT_CONFIRMED = 1


class Usage(Exception):
    pass


def parse_argv(argv: Sequence[str]) -> tuple[str | None, str | None, str, list[str]]:
    """(environments file, --yes-i-mean value, ENV, kubectl args); options only before ENV."""
    environments: str | None = None
    yes_i_mean: str | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in ("--environments", "--yes-i-mean"):
            if not eq:
                if i + 1 >= len(argv):
                    raise Usage(f"{name} needs a value")
                value = argv[i + 1]
                i += 1
            if name == "--environments":
                environments = value
            else:
                yes_i_mean = value
            i += 1
        elif arg in ("-h", "--help"):
            sys.stdout.write(USAGE)
            raise SystemExit(0)
        elif arg.startswith("-"):
            raise Usage(f"unknown option {arg!r} before ENV (kubectl's options go after ENV)")
        else:
            return environments, yes_i_mean, arg, list(argv[i + 1 :])
    raise Usage("no environment given")


def kubectl_argv(environment: Environment, args: list[str]) -> list[str]:
    """The pinned command line: context and namespace first, then the args unchanged."""
    return [
        "kubectl",
        "--context",
        environment.context,
        "--namespace",
        environment.namespace,
        *args,
    ]


def banner(environment: Environment, args: list[str]) -> str:
    """The warning shown before a production change (the pinned flags are its rows)."""
    rows = [
        f"PRODUCTION: {environment.name}",
        f"context    {environment.context}",
        f"namespace  {environment.namespace}",
        f"command    kubectl {shlex.join(args)}",
        "This changes or enters the production system.",
    ]
    width = max(len(r) for r in rows)
    rule = "!" * (width + 6)
    body = "\n".join(f"!! {r.ljust(width)} !!" for r in rows)
    return f"{rule}\n{body}\n{rule}\n"


def _open_terminal() -> int | None:
    """The controlling terminal's file descriptor, even when stdin/stdout are redirected."""
    try:
        return os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None


def confirm(terminal: int, environment: Environment, args: list[str]) -> bool:
    """Show the banner and ask on the terminal for the environment's name (canonical mode:
    one read returns the typed line; an empty read is end of input)."""
    try:
        prompt = f"Type the environment's name ({environment.name}) to go on: "
        os.write(terminal, (banner(environment, args) + prompt).encode())
        ready, _, _ = select.select([terminal], [], [], CONFIRM_TIMEOUT_S)
        if not ready:
            os.write(terminal, b"\n")
            return False
        answer = os.read(terminal, 4096).decode(errors="replace")
        return answer.strip() == environment.name
    finally:
        os.close(terminal)


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    sys.stderr.write(f"kikimimi-kube: {message}\n")
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    try:
        environments_option, yes_i_mean, name, args = parse_argv(
            sys.argv[1:] if argv is None else argv
        )
    except Usage as exc:
        fail(f"{exc}\n{USAGE}")
    try:
        environments = load_environments(environments_file(environments_option))
    except EnvironmentsError as exc:
        fail(str(exc))
    environment = environments.get(name)
    if environment is None:
        fail(f"unknown environment {name!r}; known: {', '.join(sorted(environments))}")
    try:
        command = check_pin(args, environment.namespace)
    except Refused as exc:
        fail(f"refused: {exc}")
    pinned = kubectl_argv(environment, args)
    if yes_i_mean is not None and yes_i_mean != environment.name:
        fail(f"--yes-i-mean {yes_i_mean!r} does not name the environment {environment.name!r}")
    if environment.production and not command.read_only and yes_i_mean is None:
        terminal = _open_terminal()
        if terminal is None:
            fail(
                f"{environment.name} is production and `{command.name}` changes or enters "
                "something; without a terminal to confirm on, add "
                f"--yes-i-mean {environment.name} before the environment's name"
            )
        if not confirm(terminal, environment, args):
            fail("not confirmed; nothing was run", EXIT_NOT_CONFIRMED)
    sys.stderr.flush()
    sys.stdout.flush()
    if command.plugin:
        try:
            raise SystemExit(run_plugin(environment, args))
        except PluginError as exc:
            fail(f"cannot pin the plugin `{command.name}`: {exc}")
    try:
        os.execvp(pinned[0], pinned)
    except OSError as exc:
        fail(f"cannot run kubectl: {exc.strerror}", 127)


if __name__ == "__main__":
    main()
