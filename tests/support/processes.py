"""Start kikimimi services as real processes on free loopback ports (tests and `bench/`).

Every service is configured only by prefixed environment variables, exactly as in
production; a caller names the module and the variables, and gets the process back once
its port accepts connections. Output goes to one log file per process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.timing import poll_until, scaled

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / ".pytest_cache" / "service-logs"
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.create_connection((HOST, port), 0.2):
        return True


def wait_for_port(
    port: int, timeout: float = START_TIMEOUT, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Return once 127.0.0.1:port accepts a TCP connection, or raise."""

    def opened() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before opening port {port}")
        return port_open(port)

    poll_until(opened, within=timeout, what=f"port {port} did not open")


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then SIGKILL after `timeout` (scaled); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(scaled(timeout))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(scaled(5))
        return int(self.proc.returncode)


def start_service(
    name: str,
    module: str,
    env: dict[str, str],
    wait_port: int | None,
    ports: dict[str, int] | None = None,
    timeout: float = START_TIMEOUT,
    args: list[str] | None = None,
    log_path: Path | None = None,
) -> Service:
    """Run `python -m module` with `env` added; wait until `wait_port` accepts connections.

    The log goes to `log_path`, by default a fresh file under `LOG_DIR`."""
    if log_path is None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_path = LOG_DIR / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *(args or [])],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    service = Service(name, proc, log_path, dict(ports or {}))
    if wait_port is not None:
        try:
            wait_for_port(wait_port, timeout, proc)
        except Exception:
            service.stop()
            raise RuntimeError(f"{name} did not start:\n{service.log_text()[-4000:]}") from None
    return service


class ServiceGroup:
    """Services started together and stopped together, the last started first, however the
    block that holds the group ends."""

    stop_timeout = STOP_TIMEOUT

    def __init__(self) -> None:
        self.services: list[Service] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop(self.stop_timeout)

    def named(self, name: str) -> Service:
        return next(service for service in self.services if service.name == name)

    def exited(self) -> list[str]:
        """Names of the services that have exited."""
        return [service.name for service in self.services if not service.alive()]
