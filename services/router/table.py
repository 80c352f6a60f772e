"""The route table file: read once at start, then re-read whenever it changes.

`read_table` is the one way the file becomes a `RouteTable`, at start and on every
reload. `TableWatcher` holds the table in use; a file that does not parse or validate is
rejected (the old table stays, the error is kept for /readiness and logged once).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from services.router.metrics import Metrics
from services.router.routes import RouteTable, RouteTableError, parse_route_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableFile:
    """What the file held when it was read: a valid table, or why it is not one."""

    digest: str  # of the file's text: an unchanged file is not parsed again
    table: RouteTable | None
    error: str = ""


def read_table(path: Path, known_digest: str = "") -> TableFile | None:
    """Read and validate the route table file; None when its digest is `known_digest`.

    Raises OSError when the file cannot be read; a file that is no valid table comes back
    with its `error` (and no table).
    """
    text = path.read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()
    if digest == known_digest:
        return None
    try:
        return TableFile(digest, parse_route_table(text, str(path)))
    except RouteTableError as exc:
        return TableFile(digest, None, str(exc))


class TableWatcher:
    """The route table in use, replaced by the file's when it changes and is valid."""

    def __init__(self, path: Path, loaded: TableFile, metrics: Metrics) -> None:
        assert loaded.table is not None, "start only with a valid table"
        self.path = path
        self.table: RouteTable = loaded.table
        self.error = ""  # why the file on disk was rejected, while it is
        self._digest = loaded.digest
        self._metrics = metrics
        metrics.table_ok.set(1)

    async def reload_once(self, apply: Callable[[RouteTable], Awaitable[None]]) -> None:
        """Re-read the file; when it changed and is valid, `apply` it and then use it."""
        try:
            changed = read_table(self.path, self._digest)
        except OSError as exc:
            log.error("cannot read route table, keeping the old one: %s", exc)
            return
        if changed is None:
            return
        self._digest = changed.digest  # a rejected file is reported once, not every interval
        if changed.table is None:
            self.error = changed.error
            self._metrics.reloads.labels("rejected").inc()
            self._metrics.table_ok.set(0)
            log.error("route table rejected, keeping the old one:\n%s", changed.error)
            return
        await apply(changed.table)  # first: a route never names a pool the registry lacks
        self.table, self.error = changed.table, ""
        self._metrics.reloads.labels("applied").inc()
        self._metrics.table_ok.set(1)
        log.info("route table reloaded", extra={"routes": len(changed.table.routes)})

    async def watch(self, interval: float, apply: Callable[[RouteTable], Awaitable[None]]) -> None:
        """Reload every `interval` seconds, forever."""
        while True:
            await asyncio.sleep(interval)
            await self.reload_once(apply)
