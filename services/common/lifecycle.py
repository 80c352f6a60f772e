"""Process lifecycle shared by the services: one start (`run_service`) and the stop signals.

SIGTERM (Kubernetes) and SIGINT (Ctrl-C) both start a drain; the services decide what a
drain means for them (`services.common.sessions.SessionTracker`). A second signal does not
force anything: the drain deadline does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.common.logs import configure_logging
from services.common.settings import ServiceSettings, load_settings
from services.common.tracing import configure_tracing, shutdown_tracing

log = logging.getLogger(__name__)


def stop_requested_event() -> asyncio.Event:
    """An event set by the first SIGTERM or SIGINT this process receives."""
    loop = asyncio.get_running_loop()
    event = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if not event.is_set():
            log.info("received %s: draining", sig.name)
        event.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    return event


def dump_tasks() -> None:
    """SIGUSR1: log every asyncio task with where it waits (for a session that hangs)."""
    for task in asyncio.all_tasks():
        frames = [
            f"  {f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_name}"
            for f in task.get_stack(limit=12)
        ]
        log.warning("task %s %r\n%s", task.get_name(), task.get_coro(), "\n".join(frames))


def install_uvloop() -> None:
    """Use uvloop where it is installed: the relay tiers spend their time in the loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep stdlib as fallback
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


S = TypeVar("S", bound=ServiceSettings)


def run_service(
    name: str,
    settings_class: type[S],
    serve: Callable[[S, asyncio.Event], Awaitable[None]],
) -> None:
    """The `main()` of every tier: settings, logging, tracing, uvloop, serve until a signal."""
    settings = load_settings(settings_class)
    configure_logging(name, settings.log_level, settings.log_format)
    configure_tracing(name)
    install_uvloop()

    async def main() -> None:
        await serve(settings, stop_requested_event())

    try:
        asyncio.run(main())
    finally:
        shutdown_tracing()
