"""The Makefile is the project's command surface: what it declares exists."""

from __future__ import annotations

import re

from tests.support.processes import ROOT

MAKEFILE = ROOT / "Makefile"


def test_phony_names_only_targets_that_exist() -> None:
    text = MAKEFILE.read_text(encoding="utf-8")
    phony = {
        name for line in re.findall(r"^\.PHONY:(.*)$", text, re.MULTILINE) for name in line.split()
    }
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", text, re.MULTILINE))
    assert phony, "no .PHONY line"
    assert phony - targets == set()
