"""One unit of time for every test wait, scaled for a slow machine.

Every timeout of a wait is a number of seconds on an ordinary machine; `TIMEOUT_SCALE`
(an environment variable, default 1) multiplies them all, so a loaded CI box can say
`TIMEOUT_SCALE=3` instead of each test growing its own slack. Waiting for something that
has no event to await is `await eventually(...)` (or `poll_until` in synchronous code such
as starting processes): the only polling loops of the tests.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def _scale_from_environment() -> float:
    raw = os.environ.get("TIMEOUT_SCALE", "1")
    try:
        scale = float(raw)
    except ValueError:
        raise ValueError(f"TIMEOUT_SCALE must be a number, got {raw!r}") from None
    if not scale > 0:
        raise ValueError(f"TIMEOUT_SCALE must be positive, got {raw!r}")
    return scale


TIMEOUT_SCALE = _scale_from_environment()

# Failures of a probe that mean "not yet": the port is not open, the server is restarting.
NOT_YET = (OSError, httpx.TransportError)


def scaled(seconds: float) -> float:
    """`seconds` on an ordinary machine, on this one."""
    return seconds * TIMEOUT_SCALE


async def eventually(
    probe: Callable[[], Awaitable[T]] | Callable[[], T],
    *,
    within: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Call `probe` until it returns something true and return that; raise TimeoutError
    naming `what` if `within` (scaled) seconds pass first. A probe that cannot connect yet
    (`NOT_YET`) is tried again; any other exception, an assertion included, ends the wait."""
    deadline = time.monotonic() + scaled(within)
    last: object = None
    while True:
        try:
            result = probe()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result  # type: ignore[return-value]
            last = result
        except NOT_YET as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} within {scaled(within):g} s (last: {last!r})")
        await asyncio.sleep(interval)


def poll_until(
    probe: Callable[[], object], *, within: float, what: str, interval: float = 0.05
) -> None:
    """`eventually` for synchronous code (starting processes, outside any event loop)."""
    deadline = time.monotonic() + scaled(within)
    last: object = None
    while True:
        try:
            last = probe()
            if last:
                return
        except NOT_YET as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} within {scaled(within):g} s (last: {last!r})")
        time.sleep(interval)
