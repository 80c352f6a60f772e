"""kikimimi-models [--root DIR] COMMAND …: versioned, immutable engine models.

    kikimimi-models --root /mnt/models publish ./whisper-base-905e5bf8336b --name whisper-base
    kikimimi-models verify [NAME[/VERSION]]
    kikimimi-models list [--overlay DIR]… [--pods ENV]…
    kikimimi-models gc --keep N [--yes] [--overlay DIR]… [--pods ENV]…
    kikimimi-models shadow NAME/VERSION --overlay DIR --deployment NAME   (manifests to stdout)

`--root` defaults to $KIKIMIMI_MODEL_ROOT. A version is referenced when the root-relative
path NAME/VERSION appears in a rendered overlay (`kubectl kustomize DIR`; by default every
overlay of the environments file) or in the pods running in an environment
(`kikimimi-kube ENV get pods,replicasets -o json`: a ReplicaSet kept for
`rollout undo` still counts). docs/operations.md, "Models", is the manual.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

import yaml

from services.ops.environments import EnvironmentsError, environments_file, load_environments
from services.ops.modelstore import (
    ModelStoreError,
    Version,
    check_name,
    publish,
    remove_staging,
    remove_version,
    stale_staging,
    verify,
    versions,
)
from services.ops.shadow import ShadowError, shadow_manifests

ROOT_VARIABLE = "KIKIMIMI_MODEL_ROOT"
RENDER_TIMEOUT_S = 120.0


def fail(message: str, code: int = 2) -> NoReturn:
    sys.stderr.write(f"kikimimi-models: {message}\n")
    raise SystemExit(code)


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def _run(argv: list[str], what: str) -> str:
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        fail(f"{what}: {exc}; references unknown, so nothing is listed as unused", 1)
    if result.returncode != 0:
        fail(f"{what} failed ({result.returncode}): {result.stderr.strip()}", 1)
    return result.stdout


def reference_sources(args: argparse.Namespace) -> dict[str, str]:
    """Where to look for references → the text to look in (rendered YAML, pods JSON)."""
    overlays: list[str] = list(args.overlay or [])
    if not overlays and not args.no_default_overlays:
        try:
            environments = load_environments(environments_file(args.environments))
        except EnvironmentsError:
            environments = {}
        overlays = sorted({e.overlay for e in environments.values() if e.overlay})
    sources: dict[str, str] = {}
    kubectl = shutil.which("kubectl")
    for overlay in overlays:
        if kubectl is None:
            fail("kubectl is not on PATH: it renders the overlays (kubectl kustomize)", 1)
        sources[f"overlay {overlay}"] = _run(
            [kubectl, "kustomize", overlay], f"kubectl kustomize {overlay}"
        )
    for env in args.pods or []:
        kube = [sys.executable, "-m", "services.ops.kube"]
        if args.environments:
            kube += ["--environments", args.environments]
        sources[f"cluster {env}"] = _run(
            [*kube, env, "get", "pods,replicasets", "-o", "json"],
            f"kikimimi-kube {env} get pods,replicasets",
        )
    return sources


def references(found: list[Version], sources: dict[str, str]) -> dict[str, list[str]]:
    """version ref (NAME/VERSION) → the sources that mention it."""
    return {v.ref: [where for where, text in sources.items() if v.ref in text] for v in found}


def _select(root: Path, spec: str | None) -> list[Version]:
    name, _, version = (spec or "").partition("/")
    found = versions(root, check_name(name) if name else None)
    if version:
        found = [v for v in found if v.version == version]
    if spec and not found:
        fail(f"{spec}: no such model version under {root}", 1)
    return found


def cmd_publish(root: Path, args: argparse.Namespace) -> int:
    def progress(rel: str) -> None:
        print(f"copying {rel}", flush=True)

    published = publish(root, Path(args.src), args.name, progress if args.verbose else None)
    ref = f"{args.name}/{published.version}"
    if published.created:
        print(f"published {ref} at {published.path}")
    else:
        print(f"already published: {ref} has this content; nothing was copied")
    return 0


def cmd_verify(root: Path, args: argparse.Namespace) -> int:
    found = _select(root, args.model)
    bad = 0
    for version in found:
        problems = verify(version)
        bad += bool(problems)
        for problem in problems:
            print(f"BAD {problem}")
        if not problems:
            print(f"ok  {version.ref} ({_files(version.files)}, {human_size(version.size)})")
    if not found:
        print(f"no model versions under {root}")
    return 1 if bad else 0


def cmd_list(root: Path, args: argparse.Namespace) -> int:
    found = _select(root, args.model)
    refs = references(found, reference_sources(args))
    if args.json:
        rows = [
            {
                "name": v.name,
                "version": v.version,
                "path": str(v.path),
                "size": v.size,
                "files": v.files,
                "published": v.published.isoformat(),
                "referenced_by": refs[v.ref],
            }
            for v in found
        ]
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'MODEL/VERSION':36} {'SIZE':>10} {'FILES':>6}  {'PUBLISHED (UTC)':17}  REFERENCED BY")
    for v in found:
        print(
            f"{v.ref:36} {human_size(v.size):>10} {v.files:>6}  "
            f"{v.published:%Y-%m-%d %H:%M}  {', '.join(refs[v.ref]) or '-'}"
        )
    return 0


def cmd_gc(root: Path, args: argparse.Namespace) -> int:
    if args.keep < 1:
        fail("--keep must be at least 1: the newest version of every model is always kept")
    found = versions(root)
    sources = reference_sources(args)
    if not sources:
        fail(
            "gc must know which versions are in use: name overlays (--overlay DIR) or "
            "environments (--pods ENV), or give the environments file (with overlays)"
        )
    refs = references(found, sources)
    doomed: list[Version] = []
    by_name: dict[str, list[Version]] = {}
    for version in found:  # newest first
        by_name.setdefault(version.name, []).append(version)
    for name_versions in by_name.values():
        for index, version in enumerate(name_versions):
            if index < args.keep:
                print(f"keep    {version.ref}: among the newest {args.keep}")
            elif refs[version.ref]:
                print(f"keep    {version.ref}: referenced by {', '.join(refs[version.ref])}")
            else:
                doomed.append(version)
                verb = "delete " if args.yes else "would delete"
                print(f"{verb} {version.ref} ({human_size(version.size)})")
    stale = stale_staging(root)
    for work in stale:
        print(f"{'delete ' if args.yes else 'would delete'} {work} (left by a failed publish)")
    if not args.yes:
        if doomed or stale:
            print("dry run: nothing was deleted; add --yes to delete")
        return 0
    for version in doomed:
        remove_version(root, version)
    for work in stale:
        remove_staging(work)
    return 0


def cmd_shadow(root: Path | None, args: argparse.Namespace) -> int:
    if root is not None:
        name, _, version = args.ref.partition("/")
        if not _select_quiet(root, name, version):
            fail(f"{args.ref}: not published under {root}", 1)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        fail("kubectl is not on PATH: it renders the overlay (kubectl kustomize)", 1)
    rendered = _run([kubectl, "kustomize", args.overlay], f"kubectl kustomize {args.overlay}")
    try:
        manifests = shadow_manifests(
            rendered, args.deployment, args.ref, args.suffix, args.replicas
        )
    except ShadowError as exc:
        fail(str(exc), 1)
    print(yaml.safe_dump_all(manifests, sort_keys=False), end="")
    return 0


def _select_quiet(root: Path, name: str, version: str) -> bool:
    return any(v.version == version for v in versions(root, check_name(name)))


def _terminate(signum: int, _frame: FrameType | None) -> NoReturn:
    # SIGTERM ends like Ctrl-C: the staging copy is removed on the way out.
    raise SystemExit(128 + signum)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="kikimimi-models", description=__doc__.split("\n")[0])
    top.add_argument(
        "--root",
        default=os.environ.get(ROOT_VARIABLE),
        help=f"the model root (default ${ROOT_VARIABLE})",
    )
    sub = top.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="copy SRC atomically into NAME/<version>/")
    pub.add_argument("src")
    pub.add_argument(
        "--name",
        required=True,
        help="the model, e.g. whisper-base (not the language: an engine setting)",
    )
    pub.add_argument("-v", "--verbose", action="store_true", help="print each file copied")
    ver = sub.add_parser("verify", help="check files against the manifest, and read-only modes")
    ver.add_argument("model", nargs="?", help="NAME or NAME/VERSION (default: every version)")
    for name, help_text in (
        ("list", "versions, their size, date and references"),
        ("gc", "delete versions neither referenced nor among the newest --keep"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument(
            "--overlay",
            action="append",
            help="a kustomize directory whose rendering references versions (repeatable; "
            "default: every overlay of the environments file)",
        )
        cmd.add_argument(
            "--no-default-overlays",
            action="store_true",
            help="do not render the environments file's overlays",
        )
        cmd.add_argument(
            "--pods",
            action="append",
            metavar="ENV",
            help="also the pods and ReplicaSets of ENV (kikimimi-kube ENV get pods,replicasets)",
        )
        cmd.add_argument("--environments", help="the environments file (as kikimimi-kube)")
        if name == "list":
            cmd.add_argument("model", nargs="?", help="NAME or NAME/VERSION")
            cmd.add_argument("--json", action="store_true", help="machine-readable output")
        else:
            cmd.add_argument("--keep", type=int, required=True, help="newest versions kept")
            cmd.add_argument("--yes", action="store_true", help="delete (default: dry run)")
    sha = sub.add_parser(
        "shadow", help="print a shadow pool's manifests: a Deployment mounting NAME/VERSION"
    )
    sha.add_argument("ref", metavar="NAME/VERSION")
    sha.add_argument("--overlay", required=True, help="the overlay of the running pool")
    sha.add_argument("--deployment", required=True, help="e.g. intermediate-ja")
    sha.add_argument("--suffix", default="-next", help="added to names and the language label")
    sha.add_argument("--replicas", type=int, default=1)
    return top


COMMANDS = {"publish": cmd_publish, "verify": cmd_verify, "list": cmd_list, "gc": cmd_gc}
NEEDS_NO_ROOT = {"shadow": cmd_shadow}


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.command in NEEDS_NO_ROOT:  # the root, when given, only checks the version
        raise SystemExit(NEEDS_NO_ROOT[args.command](Path(args.root) if args.root else None, args))
    if not args.root:
        fail(f"no model root: give --root DIR or set {ROOT_VARIABLE}")
    try:
        raise SystemExit(COMMANDS[args.command](Path(args.root), args))
    except ModelStoreError as exc:
        fail(str(exc), 1)
    except OSError as exc:
        fail(f"{exc.filename or ''}: {exc.strerror}".lstrip(": "), 1)


if __name__ == "__main__":
    main()
