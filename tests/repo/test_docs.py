"""The project's documents stand alone: no reference to a contract outside the repository,
and every relative link of docs/*.md and README.md leads to a file (and heading) that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ROOT

# Spelled in two parts so that this file does not mention it either.
OUTSIDE_CONTRACT = "DESIGN" + ".md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name]


def anchor(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub's rule) gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(document: Path) -> set[str]:
    text = FENCE.sub("", document.read_text(encoding="utf-8"))
    return {anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", text, re.MULTILINE)}


def test_no_tracked_file_mentions_an_outside_contract() -> None:
    mentions = [
        str(path.relative_to(ROOT))
        for path in tracked_files()
        if path.is_file() and OUTSIDE_CONTRACT.encode() in path.read_bytes()
    ]
    assert mentions == [], f"{OUTSIDE_CONTRACT} is not part of the project: point to docs/"


def test_architecture_has_every_contract_section() -> None:
    sections = anchors(ROOT / "docs" / "architecture.md")
    for heading in (
        "The path of one session",
        "Public protocol",
        "Internal protocol",
        "Engine protocol",
        "Pools, health, balancing and failover",
        "Drain",
        "Configuration and operation",
        "Security and robustness",
        "Where is each concern",
    ):
        assert anchor(heading) in sections, heading


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    text = FENCE.sub("", document.read_text(encoding="utf-8"))
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check
            continue
        path_part, _, fragment = target.partition("#")
        linked = (document.parent / path_part).resolve() if path_part else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: no such heading")
    assert broken == [], f"{document.name}: {broken}"
