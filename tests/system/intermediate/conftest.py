"""A fresh stack per test: each fault needs its own engine processes."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with Stack(tmp_path) as stack:
        yield stack
        for service in stack.services:  # stop them all at once; Stack.stop then waits
            service.signal(signal.SIGCONT)
            service.signal(signal.SIGTERM)
