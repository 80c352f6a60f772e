"""What a kubectl command line does, as far as pinning it to one environment goes.

Pure functions over argv (no kubectl, no cluster): where the subcommand is, whether an
argument would move the command off the pinned context or namespace, and whether the
command changes or enters something (production asks first) or only reads.
"""

from __future__ import annotations

from dataclasses import dataclass

# kubectl's global flags that take a value (`--flag value` as well as `--flag=value`).
GLOBAL_FLAGS_WITH_VALUE = frozenset(
    {
        "--as",
        "--as-group",
        "--as-uid",
        "--cache-dir",
        "--certificate-authority",
        "--client-certificate",
        "--client-key",
        "--cluster",
        "--context",
        "--kubeconfig",
        "--log-flush-frequency",
        "--namespace",
        "--password",
        "--profile",
        "--profile-output",
        "--request-timeout",
        "--server",
        "--tls-server-name",
        "--token",
        "--user",
        "--username",
        "--v",
        "--vmodule",
        "-n",
        "-s",
        "-v",
    }
)

# Flags that name another cluster, kubeconfig or identity: the pin would not hold.
ESCAPING_FLAGS = {
    "--context": "it names another kubeconfig context; the environment's context is pinned",
    "--kubeconfig": "it names another kubeconfig, whose contexts the pin does not know",
    "--cluster": "it names another cluster than the environment's context",
    "--user": "it names another kubeconfig user than the environment's context",
    "--server": "it names another API server than the environment's context",
    "-s": "it (--server) names another API server than the environment's context",
    "--token": "it replaces the context's credentials",
    "--username": "it replaces the context's credentials",
    "--password": "it replaces the context's credentials",
    "--client-certificate": "it replaces the context's credentials",
    "--client-key": "it replaces the context's credentials",
    "--certificate-authority": "it changes which API server is trusted",
    "--insecure-skip-tls-verify": "it stops checking that the API server is the right one",
    "--tls-server-name": "it changes which API server is trusted",
    "--as": "it acts as another identity (impersonation)",
    "--as-group": "it acts as another identity (impersonation)",
    "--as-uid": "it acts as another identity (impersonation)",
    "--all-namespaces": "it reaches every namespace; the environment's namespace is pinned",
    "-A": "it (--all-namespaces) reaches every namespace; the environment's namespace is pinned",
}

# Every built-in kubectl command (kubectl 1.34). Anything else is a plugin.
BUILTIN_COMMANDS = frozenset(
    {
        "alpha",
        "annotate",
        "api-resources",
        "api-versions",
        "apply",
        "attach",
        "auth",
        "autoscale",
        "certificate",
        "cluster-info",
        "completion",
        "config",
        "cordon",
        "cp",
        "create",
        "debug",
        "delete",
        "describe",
        "diff",
        "drain",
        "edit",
        "events",
        "exec",
        "explain",
        "expose",
        "get",
        "help",
        "kustomize",
        "label",
        "logs",
        "options",
        "patch",
        "plugin",
        "port-forward",
        "proxy",
        "replace",
        "rollout",
        "run",
        "scale",
        "set",
        "taint",
        "top",
        "uncordon",
        "version",
        "wait",
    }
)

# Commands that only read. Everything else changes or enters something and asks first on
# production: an unknown command is never assumed harmless.
READ_ONLY_COMMANDS = frozenset(
    {
        "api-resources",
        "api-versions",
        "cluster-info",
        "completion",
        "describe",
        "diff",
        "events",
        "explain",
        "get",
        "help",
        "kustomize",
        "logs",
        "options",
        "plugin",
        "top",
        "version",
        "wait",
    }
)
# Commands whose subcommands differ: these subcommands only read.
READ_ONLY_SUBCOMMANDS = {
    "auth": frozenset({"can-i", "whoami"}),
    "rollout": frozenset({"history", "status"}),
    "config": frozenset({"current-context", "get-clusters", "get-contexts", "get-users", "view"}),
}

# Short boolean flags that may be bundled before -n (`-itn other`): -i, -t (exec, run),
# -q (run), -w (get), -R (apply), -p (logs --previous), -f (logs --follow).
_BUNDLED_BOOLEANS = frozenset("itqwRp")


class Refused(Exception):
    """The command line would escape the environment's pin; the message says why."""


@dataclass(frozen=True)
class Command:
    """Where the kubectl subcommand is and what it does."""

    index: int  # position of the subcommand in argv
    name: str
    subcommand: str | None

    @property
    def plugin(self) -> bool:
        """Not a kubectl command: kubectl runs the plugin kubectl-<name> from PATH."""
        return self.name not in BUILTIN_COMMANDS

    @property
    def read_only(self) -> bool:
        if self.name in READ_ONLY_COMMANDS:
            return True
        return self.subcommand in READ_ONLY_SUBCOMMANDS.get(self.name, frozenset())


def _options(args: list[str]) -> list[str]:
    """The arguments kubectl parses as its own: everything before a `--`."""
    return args[: args.index("--")] if "--" in args else args


def _positionals(args: list[str]) -> list[tuple[int, str]]:
    """(index, argument) of every argument that is neither a global flag nor its value."""
    found = []
    i = 0
    while i < len(args) and args[i] != "--":
        arg = args[i]
        if not arg.startswith("-") or arg == "-":
            found.append((i, arg))
        i += 2 if arg in GLOBAL_FLAGS_WITH_VALUE else 1
    return found


def find_command(args: list[str]) -> Command:
    """The subcommand (the first positional argument) and its own subcommand, if any."""
    positionals = _positionals(args)
    if not positionals:
        raise Refused("no kubectl command given (e.g. `get pods`)")
    index, name = positionals[0]
    return Command(index, name, positionals[1][1] if len(positionals) > 1 else None)


def _short_bundle(arg: str, following: str, command: str) -> list[tuple[str, str, str]]:
    """(flag, value, spelling) of a bundle of short flags (`-itn x`, `-nx`, `-fn=x`):
    booleans first, then at most one flag with its value glued on or in the next argument."""
    booleans = _BUNDLED_BOOLEANS | {"A"} | ({"f"} if command == "logs" else set())
    found = []
    for j, flag in enumerate(arg[1:], start=1):
        if flag in booleans:
            found.append((flag, "", arg))
            continue
        glued = arg[j + 1 :].removeprefix("=")
        found.append((flag, glued or following, arg if glued else f"{arg} {following}".strip()))
        break
    return found


def check_pin(args: list[str], namespace: str) -> Command:
    """The command, or `Refused` when an argument would leave the pinned context/namespace."""
    command = find_command(args)
    if command.name == "config" and not command.read_only:
        raise Refused(
            f"`config {command.subcommand or ''}`".replace(" `", "`")
            + " edits the kubeconfig (use-context, set-context, set, unset, delete-…), which "
            "changes what every later plain kubectl command hits; only config view, "
            "current-context and get-… are allowed"
        )
    options = _options(args)
    namespaces: list[tuple[str, str]] = []
    for i, arg in enumerate(options):
        following = options[i + 1] if i + 1 < len(options) else ""
        if arg.startswith("--"):
            flag, eq, value = arg.partition("=")
            if flag in ESCAPING_FLAGS:
                raise Refused(f"`{arg}` is refused: {ESCAPING_FLAGS[flag]}")
            if flag == "--namespace":
                namespaces.append((arg if eq else f"{arg} {following}", value if eq else following))
        elif arg.startswith("-") and len(arg) > 1:
            for flag, value, spelling in _short_bundle(arg, following, command.name):
                if f"-{flag}" in ESCAPING_FLAGS:
                    raise Refused(f"`{spelling}` is refused: {ESCAPING_FLAGS['-' + flag]}")
                if flag == "n":
                    namespaces.append((spelling, value))
    for spelling, value in namespaces:
        if value != namespace:
            raise Refused(
                f"`{spelling}` is refused: the environment's namespace is {namespace!r}; "
                "another namespace belongs to another environment"
            )
    return command
