"""Start engine_stub: `python -m engine_stub` (settings: ENGINE_STUB_* variables)."""

from __future__ import annotations

from engine_stub.config import Settings
from engine_stub.server import serve
from services.common.lifecycle import run_service


def main() -> None:
    run_service("engine_stub", Settings, serve)


if __name__ == "__main__":
    main()
