"""Typed settings from prefixed environment variables (docs/architecture.md,
"Configuration and operation").

Each service defines one `Settings` subclass of `ServiceSettings` with its own
`env_prefix`, builds it in `main()` with `load_settings`, and hands it down. A bad value
stops start-up with a message that names the variable.
"""

from __future__ import annotations

import sys
from typing import Literal, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

LogFormat = Literal["auto", "json", "console"]


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclasses set `model_config` with their prefix."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # auto: JSON lines unless stdout is a terminal.
    log_format: LogFormat = "auto"


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S]) -> S:
    """Build `cls` from the environment, or exit(2) naming every bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            lines.append(f"  {prefix}{field.upper()}: {error['msg']} (got {error.get('input')!r})")
        sys.stderr.write("invalid settings:\n" + "\n".join(lines) + "\n")
        raise SystemExit(2) from None
