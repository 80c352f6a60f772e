"""python -m services.endpoint"""

from __future__ import annotations

from services.common.lifecycle import run_service
from services.endpoint.app import serve
from services.endpoint.config import Settings


def main() -> None:
    run_service("endpoint", Settings, serve)


if __name__ == "__main__":
    main()
