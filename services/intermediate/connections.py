"""Engine connections: opening, closing on every path, describing failures, backoff."""

from __future__ import annotations

import asyncio
import contextlib
import random

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.protocol import State

# Engine replies are small JSON; 1 MiB is vosk-server's own frame limit.
MAX_ENGINE_MESSAGE = 1024 * 1024
# A graceful close that takes longer than this is cut short (the engine may be frozen).
CLOSE_TIMEOUT = 1.0


async def open_connection(url: str, connect_timeout: float) -> ClientConnection:
    """Open one engine connection (TCP + WebSocket handshake) within `connect_timeout`."""
    return await connect(
        url,
        open_timeout=connect_timeout,
        ping_interval=None,  # the pool pings idle connections; sessions time replies
        close_timeout=CLOSE_TIMEOUT,
        max_size=MAX_ENGINE_MESSAGE,
        compression=None,
    )


class Backoff:
    """Exponential backoff with jitter (half to full delay), capped."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial, self.cap, self.attempt = initial, cap, 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.initial * 2**self.attempt)
        self.attempt += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


def describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"refused with HTTP {exc.response.status_code}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


async def close_connection(conn: ClientConnection, graceful: bool) -> None:
    """Close `conn`: a bounded closing handshake, or at once; never leaves it open."""
    try:
        if graceful and conn.state is not State.CLOSED:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await conn.close()
    finally:
        if conn.state is not State.CLOSED:
            conn.transport.abort()  # connection_lost follows on the next loop iteration
