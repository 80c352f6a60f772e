"""The services under test, started as subprocesses on free loopback ports.

The benchmark never relies on a running `make run`: it starts engine_stub, one
intermediate, a router with its own route table and an endpoint, each configured only by
its environment variables (as tests/stack.py does), with limits raised so that admission
is never what a step measures. Logs go to files in a temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
BIG = 100_000  # session caps and engine capacity: never the limit a step hits


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if callable(predicate) and predicate():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} within {timeout:g} s")


def _port_open(port: int) -> bool:
    with socket.create_connection((HOST, port), 0.5):
        return True


def _http_json(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read() or b"{}")


def _router_ready(http_port: int) -> bool:
    status, body = _http_json(f"http://{HOST}:{http_port}/readiness")
    routes = body.get("routes")
    return (
        status == 200
        and isinstance(routes, list)
        and bool(routes)
        and all(isinstance(r, dict) and r.get("healthy_backends") for r in routes)
    )


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

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Stack:
    """engine_stub → intermediate → router → endpoint, as in the Procfile."""

    def __init__(
        self, workdir: Path, log_level: str = "INFO", extra_env: dict[str, str] | None = None
    ) -> None:
        self.workdir = workdir
        self.log_level = log_level
        self.extra_env = dict(extra_env or {})  # e.g. ROUTER_FAILOVER_BUFFER_SECONDS=0
        self.services: dict[str, Service] = {}

    def __enter__(self) -> Stack:
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()

    @property
    def endpoint_url(self) -> str:
        return f"ws://{HOST}:{self.services['endpoint'].ports['http']}/"

    @property
    def engine_url(self) -> str:
        return f"ws://{HOST}:{self.services['engine'].ports['ws']}"

    def check_alive(self) -> list[str]:
        """Names of services that have exited."""
        return [name for name, s in self.services.items() if not s.alive()]

    def _spawn(self, name: str, module: str, env: dict[str, str], ports: dict[str, int]) -> Service:
        log_path = self.workdir / f"{name}.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env, **self.extra_env}
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", module],
                cwd=ROOT,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        service = Service(name, proc, log_path, ports)
        self.services[name] = service
        return service

    def _start_all(self) -> None:
        level = self.log_level
        engine_port = free_port()
        engine = self._spawn(
            "engine",
            "engine_stub",
            {
                "ENGINE_STUB_PORT": str(engine_port),
                "ENGINE_STUB_LOG_FORMAT": "json",
                "ENGINE_STUB_LOG_LEVEL": level,
            },
            {"ws": engine_port},
        )
        _wait(lambda: _port_open(engine_port), 30, "engine_stub did not open its port")

        grpc_port, http_port = free_port(), free_port()
        self._spawn(
            "intermediate",
            "services.intermediate",
            {
                "INTERMEDIATE_NAME": "intermediate-bench",
                "INTERMEDIATE_GRPC_PORT": str(grpc_port),
                "INTERMEDIATE_HTTP_PORT": str(http_port),
                "INTERMEDIATE_ENGINES": f"ws://{HOST}:{engine.ports['ws']}",
                "INTERMEDIATE_ENGINE_CAPACITY": str(BIG),
                "INTERMEDIATE_CHECKOUT_TIMEOUT": "30",
                "INTERMEDIATE_LOG_FORMAT": "json",
                "INTERMEDIATE_LOG_LEVEL": level,
            },
            {"grpc": grpc_port, "http": http_port},
        )
        _wait(
            lambda: _http_json(f"http://{HOST}:{http_port}/readiness")[0] == 200,
            30,
            "the intermediate was not ready",
        )

        routes = self.workdir / "routes.yaml"
        routes.write_text(
            json.dumps(  # JSON is YAML
                {
                    "pools": {"ja": {"backends": [f"{HOST}:{grpc_port}"]}},
                    "routes": [{"process": ["asr", "nict-asr"], "language": "ja", "pool": "ja"}],
                }
            )
        )
        router_grpc, router_http = free_port(), free_port()
        self._spawn(
            "router",
            "services.router",
            {
                "ROUTER_GRPC_PORT": str(router_grpc),
                "ROUTER_HTTP_PORT": str(router_http),
                "ROUTER_ROUTES_FILE": str(routes),
                "ROUTER_ACCEPT_TIMEOUT": "30",
                "ROUTER_LOG_FORMAT": "json",
                "ROUTER_LOG_LEVEL": level,
            },
            {"grpc": router_grpc, "http": router_http},
        )
        _wait(lambda: _router_ready(router_http), 30, "the router did not see its backend")

        endpoint_port = free_port()
        self._spawn(
            "endpoint",
            "services.endpoint",
            {
                "ENDPOINT_PORT": str(endpoint_port),
                "ENDPOINT_ROUTER_ADDRESS": f"{HOST}:{router_grpc}",
                "ENDPOINT_MAX_SESSIONS_PER_PROCESS": str(BIG),
                "ENDPOINT_ACCEPT_TIMEOUT": "30",
                "ENDPOINT_LOG_FORMAT": "json",
                "ENDPOINT_LOG_LEVEL": level,
            },
            {"http": endpoint_port},
        )
        _wait(
            lambda: _http_json(f"http://{HOST}:{endpoint_port}/readiness")[0] == 200,
            30,
            "the endpoint was not ready",
        )
