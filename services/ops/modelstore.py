"""Versioned, immutable model directories on a model root (docs/operations.md, "Models").

    ROOT/NAME/VERSION/…             one published model: read-only files and directories
    ROOT/NAME/VERSION/MANIFEST.sha256
                                    `<sha256>  <path>` per file, sorted (`sha256sum -c` reads it)
    ROOT/.staging/                  copies in progress (never under NAME/), one lock each

VERSION is the first 16 hex digits of the SHA-256 of the manifest, so the same content
always gets the same version and another content another one. A publish copies into
`.staging/` and appears under NAME/ only by one rename of a complete, verified,
read-only tree: NAME/ never holds a half-written version, whatever happens to the
process. Two publishers of the same content race only for that rename; the loser finds
the version there and discards its copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

MANIFEST = "MANIFEST.sha256"
STAGING = ".staging"
VERSION_DIGITS = 16
_CHUNK = 1 << 20
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_VERSION = re.compile(rf"^[0-9a-f]{{{VERSION_DIGITS}}}$")


class ModelStoreError(Exception):
    """A refused or failed operation; the message says what and why."""


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    path: Path
    size: int
    files: int
    published: datetime

    @property
    def ref(self) -> str:
        """The root-relative path a manifest mounts (`subPath: NAME/VERSION`)."""
        return f"{self.name}/{self.version}"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ModelStoreError(
            f"model name {name!r}: lower-case letters, digits, '.', '_' and '-', "
            "at most 63, starting with a letter or digit"
        )
    return name


def _source_files(src: Path) -> list[str]:
    """Every regular file under src as a sorted POSIX relative path; refuses anything else."""
    if not src.is_dir():
        raise ModelStoreError(f"{src}: not a directory")
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(src, onerror=_raise):
        dirnames.sort()
        for entry in (*dirnames, *filenames):
            path = Path(dirpath) / entry
            rel = path.relative_to(src).as_posix()
            mode = path.lstat().st_mode
            if "\n" in rel or "\\" in rel:
                raise ModelStoreError(f"{path}: a newline or backslash in a file name")
            if stat.S_ISLNK(mode):
                raise ModelStoreError(
                    f"{path}: a symbolic link; publish real files (a link could point "
                    "outside the immutable version)"
                )
            if stat.S_ISREG(mode):
                if rel == MANIFEST:
                    raise ModelStoreError(f"{path}: {MANIFEST} is the name of the manifest")
                files.append(rel)
            elif not stat.S_ISDIR(mode):
                raise ModelStoreError(f"{path}: not a regular file or directory")
    if not files:
        raise ModelStoreError(f"{src}: no files to publish")
    return sorted(files)


def _raise(error: OSError) -> None:
    raise error


def _hash_file(path: Path, copy_to: Path | None = None) -> str:
    """The file's SHA-256, copying it to copy_to (flushed to disk) as it is read."""
    digest = hashlib.sha256()
    with open(path, "rb") as source, contextlib.ExitStack() as stack:
        target = stack.enter_context(open(copy_to, "xb")) if copy_to else None
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            if target:
                target.write(chunk)
        if target:
            target.flush()
            os.fsync(target.fileno())
    return digest.hexdigest()


def manifest_text(hashes: dict[str, str]) -> str:
    return "".join(f"{h}  {rel}\n" for rel, h in sorted(hashes.items()))


def version_of(manifest: str) -> str:
    return hashlib.sha256(manifest.encode()).hexdigest()[:VERSION_DIGITS]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_read_only(tree: Path, top_too: bool) -> None:
    for dirpath, dirnames, filenames in os.walk(tree, topdown=False):
        for name in filenames:
            path = Path(dirpath) / name
            executable = path.stat().st_mode & 0o111
            path.chmod(0o555 if executable else 0o444)
        for name in dirnames:
            (Path(dirpath) / name).chmod(0o555)
    if top_too:
        tree.chmod(0o555)


def _remove_tree(tree: Path) -> None:
    """Remove a (read-only) tree: its directories made writable first, top down."""
    if not tree.exists():
        return
    tree.chmod(0o755)
    for dirpath, dirnames, _ in os.walk(tree):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
    shutil.rmtree(tree)


@contextlib.contextmanager
def _staging(root: Path, name: str) -> Iterator[Path]:
    """A fresh staging directory, locked while in use and removed when done or failed."""
    staging = root / STAGING
    staging.mkdir(mode=0o755, exist_ok=True)
    work = staging / f"{name}.{secrets.token_hex(6)}"
    with open(f"{work}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            work.mkdir()
            yield work
        finally:
            _remove_tree(work)
            os.unlink(f"{work}.lock")


@dataclass(frozen=True)
class Published:
    version: str
    path: Path
    created: bool  # False: the same content was published already


def publish(
    root: Path,
    src: Path,
    name: str,
    progress: Callable[[str], None] | None = None,
) -> Published:
    """Publish src as NAME/<version> on root, atomically; a no-op for published content."""
    check_name(name)
    if not root.is_dir():
        raise ModelStoreError(f"{root}: the model root is not a directory")
    files = _source_files(src)
    # First pass: read only. Content already published costs no write at all.
    hashes = {rel: _hash_file(src / rel) for rel in files}
    manifest = manifest_text(hashes)
    version = version_of(manifest)
    target = root / name / version
    if target.exists():
        return Published(version, target, created=False)
    (root / name).mkdir(mode=0o755, exist_ok=True)
    with _staging(root, name) as work:
        tree = work / version
        tree.mkdir()
        copied: dict[str, str] = {}
        for rel in files:
            if progress:
                progress(rel)
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            copied[rel] = _hash_file(src / rel, copy_to=tree / rel)
        if manifest_text(copied) != manifest:
            raise ModelStoreError(f"{src}: changed while it was being published; try again")
        (tree / MANIFEST).write_text(manifest)
        for dirpath, _, _ in os.walk(tree):
            _fsync_dir(Path(dirpath))
        _make_read_only(tree, top_too=False)
        try:
            os.rename(tree, target)
        except OSError:
            if target.exists():  # another publisher of the same content won the race
                return Published(version, target, created=False)
            raise
        target.chmod(0o555)
        _fsync_dir(root / name)
    return Published(version, target, created=True)


def versions(root: Path, name: str | None = None) -> list[Version]:
    """Every published version (of one model), newest first."""
    if not root.is_dir():
        raise ModelStoreError(f"{root}: the model root is not a directory")
    names = [check_name(name)] if name else sorted(p.name for p in root.iterdir())
    found: list[Version] = []
    for model in names:
        model_dir = root / model
        if model.startswith(".") or not model_dir.is_dir():
            continue
        for entry in sorted(model_dir.iterdir()):
            if not _VERSION.match(entry.name) or not entry.is_dir():
                continue
            size, count = 0, 0
            for dirpath, _, filenames in os.walk(entry):
                for filename in filenames:
                    size += (Path(dirpath) / filename).lstat().st_size
                    count += filename != MANIFEST or dirpath != str(entry)
            manifest = entry / MANIFEST
            when = (manifest if manifest.exists() else entry).stat().st_mtime
            found.append(
                Version(model, entry.name, entry, size, count, datetime.fromtimestamp(when, UTC))
            )
    return sorted(found, key=lambda v: (v.published, v.ref), reverse=True)


def verify(version: Version) -> list[str]:
    """What is wrong with a published version (nothing: an empty list)."""
    path = version.path
    try:
        manifest = (path / MANIFEST).read_text()
    except OSError as exc:
        return [f"{version.ref}: no readable {MANIFEST} ({exc.strerror})"]
    problems = []
    if version_of(manifest) != version.version:
        problems.append(f"{version.ref}: the manifest does not hash to the version")
    listed: dict[str, str] = {}
    for line in manifest.splitlines():
        digest, sep, rel = line.partition("  ")
        if not sep:
            problems.append(f"{version.ref}: {MANIFEST}: bad line {line!r}")
            continue
        listed[rel] = digest
    present: set[str] = set()
    for dirpath, _, filenames in os.walk(path):
        for filename in filenames:
            present.add((Path(dirpath) / filename).relative_to(path).as_posix())
    present.discard(MANIFEST)
    for rel in sorted(present - listed.keys()):
        problems.append(f"{version.ref}: {rel}: not in the manifest")
    for rel in sorted(listed.keys() - present):
        problems.append(f"{version.ref}: {rel}: missing")
    for rel in sorted(listed.keys() & present):
        try:
            if _hash_file(path / rel) != listed[rel]:
                problems.append(f"{version.ref}: {rel}: content differs from the manifest")
        except OSError as exc:
            problems.append(f"{version.ref}: {rel}: unreadable ({exc.strerror})")
    for dirpath, dirnames, filenames in os.walk(path):
        for entry in (dirpath, *(os.path.join(dirpath, n) for n in filenames + dirnames)):
            if os.lstat(entry).st_mode & 0o222:
                rel = Path(entry).relative_to(path).as_posix()
                problems.append(f"{version.ref}: {rel}: writable (published trees are read-only)")
    return problems


def stale_staging(root: Path, min_age_s: float = 60.0) -> list[Path]:
    """Staging left by publishers or deletions that died: no lock, or a lock nobody holds
    (and older than min_age_s, so that a publish that has only just begun is left alone)."""
    staging = root / STAGING
    if not staging.is_dir():
        return []
    now = datetime.now(UTC).timestamp()
    stale = []
    for entry in sorted(staging.iterdir()):
        if now - entry.lstat().st_mtime < min_age_s:
            continue
        if entry.suffix == ".lock":
            if entry.with_suffix("").exists():
                continue  # judged with its directory
            entry = entry.with_suffix("")  # a lock whose publisher died while cleaning up
        lock_path = Path(f"{entry}.lock")
        if lock_path.exists():
            with open(lock_path) as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a publish in progress
                fcntl.flock(lock, fcntl.LOCK_UN)
        stale.append(entry)
    return stale


def remove_staging(work: Path) -> None:
    _remove_tree(work)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{work}.lock")


def remove_version(root: Path, version: Version) -> None:
    """Delete a version: first renamed out of NAME/ (one step), then removed."""
    trash = root / STAGING / f"deleting.{version.name}.{version.version}.{secrets.token_hex(4)}"
    (root / STAGING).mkdir(mode=0o755, exist_ok=True)
    version.path.chmod(0o755)  # renaming a directory to another parent updates its '..'
    os.rename(version.path, trash)
    _remove_tree(trash)
