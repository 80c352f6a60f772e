"""python -m services.intermediate"""

from __future__ import annotations

from services.common.lifecycle import run_service
from services.intermediate.config import Settings
from services.intermediate.server import serve


def main() -> None:
    run_service("intermediate", Settings, serve)


if __name__ == "__main__":
    main()
