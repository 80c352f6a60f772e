"""Every test's pytest-timeout follows TIMEOUT_SCALE like every wait inside it does."""

from __future__ import annotations

import pytest

from tests.support.timing import TIMEOUT_SCALE


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TIMEOUT_SCALE == 1:
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        seconds = float(marker.args[0]) if marker is not None and marker.args else default
        if seconds > 0:
            item.add_marker(pytest.mark.timeout(seconds * TIMEOUT_SCALE), append=False)
