"""The locks pin every third-party package with its hashes, and every install checks them.

`make lock` writes the locks (docs/deploy.md, "Images"); these tests fail when a lock
was edited by hand into a state pip's hash-checking mode would refuse, when pyproject.toml
names a dependency that no lock carries, or when an install step stops checking hashes.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.processes import ROOT

pytestmark = pytest.mark.timeout(10)

RUNTIME, ENGINE, DEV = "requirements.lock", "requirements-engine.lock", "requirements-dev.lock"
BUILD, BOOTSTRAP = "requirements-build.lock", "requirements-bootstrap.lock"
LOCKS = (RUNTIME, ENGINE, DEV, BUILD, BOOTSTRAP, "requirements-tools.lock")
ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)(?P<options>.*)$")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: frozenset[str]


def entries(lock: str) -> list[str]:
    """The lock's logical lines (continuations joined), comments and blank lines left out."""
    text = (ROOT / lock).read_text(encoding="utf-8").replace("\\\n", " ")
    lines = (line.split(" #", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def parsed(lock: str) -> list[re.Match[str]]:
    """Each entry of the lock as `name==version` and the options after it."""
    result = []
    for line in entries(lock):
        match = ENTRY.match(line)
        assert match, f"{lock}: not a `name==version --hash=…` line: {line[:120]}"
        result.append(match)
    return result


def pins(lock: str) -> dict[str, Pin]:
    return {
        canonicalize_name(m["name"]): Pin(m["version"], frozenset(HASH.findall(m["options"])))
        for m in parsed(lock)
    }


@pytest.mark.parametrize("lock", LOCKS)
def test_every_line_of_the_lock_pins_one_version_with_its_hashes(lock: str) -> None:
    """No option lines (no index, find-links, editable or file:// source: the lock resolves
    from PyPI alone) and every package `==` one version with at least one sha256."""
    matches = parsed(lock)
    assert matches, f"{lock} pins nothing"
    for match in matches:
        assert HASH.search(match["options"]), f"{lock}: no hash for {match[0][:80]}"
        leftover = HASH.sub("", match["options"]).replace(";", " ").split()
        assert not [word for word in leftover if word.startswith("-")], f"{lock}: {match[0]}"


def dependencies(group: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    listed = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(text) for text in listed]


@pytest.mark.parametrize(
    ("group", "locks"),
    [(None, (RUNTIME, ENGINE, DEV)), ("engine", (ENGINE, DEV)), ("dev", (DEV,))],
)
def test_pyproject_dependencies_are_all_in_their_locks(
    group: str | None, locks: tuple[str, ...]
) -> None:
    """Each dependency pyproject.toml declares is pinned, at a version its specifier allows,
    in every lock that installs its group: the runtime set in all three, the engine extra in
    the engine image's and make's, the dev extra in make's."""
    for lock in locks:
        locked = pins(lock)
        for requirement in dependencies(group):
            pin = locked.get(canonicalize_name(requirement.name))
            assert pin, f"{requirement} (pyproject.toml) is not in {lock}: run `make lock`"
            assert requirement.specifier.contains(pin.version, prereleases=True), (
                f"{lock} pins {requirement.name}=={pin.version}, pyproject.toml asks {requirement}"
            )


def test_the_engine_extra_stays_out_of_the_runtime_lock() -> None:
    """The relay images install requirements.lock: no recogniser may reach them."""
    runtime = pins(RUNTIME)
    for requirement in dependencies("engine"):
        assert canonicalize_name(requirement.name) not in runtime


def test_the_project_build_backend_is_in_the_build_lock() -> None:
    """pip builds the project with --no-build-isolation, from what requirements-build.lock
    installed: pyproject.toml's [build-system] requires must all be there."""
    build_system = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    build = pins(BUILD)
    for text in build_system["build-system"]["requires"]:
        requirement = Requirement(text)
        pin = build.get(canonicalize_name(requirement.name))
        assert pin, f"{requirement} is not in {BUILD}: add it to requirements-build.in"
        assert requirement.specifier.contains(pin.version, prereleases=True)


def test_a_package_has_one_version_and_one_set_of_hashes_in_every_lock() -> None:
    """The image locks are subsets of make's, so what the tests ran is what the images run;
    the build lock agrees with make's where they share a package."""
    dev = pins(DEV)
    for lock in (RUNTIME, ENGINE):
        for name, pin in pins(lock).items():
            assert dev.get(name) == pin, f"{name}: {lock} and {DEV} differ"
    for name, pin in pins(BUILD).items():
        assert dev.get(name, pin) == pin, f"{name}: {BUILD} and {DEV} differ"


def install_commands() -> list[tuple[str, str]]:
    """Every `pip install` / `pip download` of the Makefile, the Dockerfiles and the CI
    scripts that install this project's dependencies, continuation lines joined."""
    files = [
        ROOT / "Makefile",
        ROOT / ".ci" / "install-tools.sh",
        *sorted((ROOT / "docker").glob("*.Dockerfile")),
    ]
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8").replace("\\\n", " ")
        for command in re.split(r"&&|\n", text):
            if re.search(
                r"\bpip (install|download|wheel)\b", command
            ) and not command.lstrip().startswith("#"):
                found.append((path.name, " ".join(command.split())))
    return found


def test_every_install_checks_hashes_or_installs_only_the_project() -> None:
    """A third-party package comes only from a lock in hash-checking mode; the project itself
    is installed on top with --no-deps (it has no hash: it is the code being built)."""
    commands = install_commands()
    assert len(commands) >= 5 * 3, commands
    for where, command in commands:
        assert " -c " not in command, f"{where}: a constraint instead of a lock: {command}"
        lock = re.search(r" -r \S*(requirements[\w-]*\.lock)\b", command)
        if "--require-hashes" in command:
            assert lock, (where, command)
            # What may build from source builds with the hashed backends, not pip's own.
            if where != "install-tools.sh" and lock[1] not in (BUILD, BOOTSTRAP):
                assert "--no-build-isolation" in command, f"{where}: {command}"
        else:
            assert "--no-build-isolation" in command, f"{where}: {command}"
            assert "--no-deps" in command, f"{where}: no --require-hashes: {command}"
            assert re.search(r" (-e )?\.$", command), f"{where}: not the project: {command}"
