"""python -m services.router"""

from __future__ import annotations

from services.common.lifecycle import run_service
from services.router.config import Settings
from services.router.server import serve


def main() -> None:
    run_service("router", Settings, serve)


if __name__ == "__main__":
    main()
