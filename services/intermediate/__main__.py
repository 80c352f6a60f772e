"""python -m services.intermediate"""

from __future__ import annotations

import asyncio

from services.common.lifecycle import install_uvloop, stop_requested_event
from services.common.logs import configure_logging
from services.common.settings import load_settings
from services.intermediate.config import Settings
from services.intermediate.server import serve


async def _main(settings: Settings) -> None:
    await serve(settings, stop_requested_event())


def main() -> None:
    settings = load_settings(Settings)
    configure_logging("intermediate", settings.log_level, settings.log_format)
    install_uvloop()
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
