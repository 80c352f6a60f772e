"""The services under test, started as subprocesses on free loopback ports.

The benchmark never relies on a running `make run`: it starts engine_stub, one
intermediate, a router with its own route table and an endpoint, each configured only by
its environment variables, with the tests' process runner (`tests/support/processes.py`)
and limits raised so that admission is never what a step measures. Logs go to files in a
temporary directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.http import get_json_blocking
from tests.support.processes import HOST, Service, ServiceGroup, free_port, start_service
from tests.support.timing import poll_until

BIG = 100_000  # session caps and engine capacity: never the limit a step hits
START_TIMEOUT = 30.0


def _ready(http_port: int) -> bool:
    return get_json_blocking(f"http://{HOST}:{http_port}/readiness")[0] == 200


def _router_ready(http_port: int) -> bool:
    status, body = get_json_blocking(f"http://{HOST}:{http_port}/readiness")
    routes = body.get("routes")
    return (
        status == 200
        and isinstance(routes, list)
        and bool(routes)
        and all(isinstance(r, dict) and r.get("healthy_backends") for r in routes)
    )


class Stack(ServiceGroup):
    """engine_stub → intermediate → router → endpoint, as in the Procfile."""

    def __init__(
        self, workdir: Path, log_level: str = "INFO", extra_env: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.workdir = workdir
        self.log_level = log_level
        self.extra_env = dict(extra_env or {})  # e.g. ROUTER_FAILOVER_BUFFER_SECONDS=0

    stop_timeout = 15.0  # a drain after a step may take a while on a loaded machine

    def __enter__(self) -> Stack:
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def endpoint_url(self) -> str:
        return f"ws://{HOST}:{self.named('endpoint').ports['http']}/"

    @property
    def engine_url(self) -> str:
        return f"ws://{HOST}:{self.named('engine').ports['ws']}"

    def _spawn(
        self,
        name: str,
        module: str,
        env: dict[str, str],
        ports: dict[str, int],
        wait_port: int | None = None,
    ) -> Service:
        service = start_service(
            name,
            module,
            env | self.extra_env,
            wait_port,
            ports,
            timeout=START_TIMEOUT,
            log_path=self.workdir / f"{name}.log",
        )
        self.services.append(service)
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
            wait_port=engine_port,
        )

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
        poll_until(
            lambda: _ready(http_port), within=START_TIMEOUT, what="the intermediate was not ready"
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
        poll_until(
            lambda: _router_ready(router_http),
            within=START_TIMEOUT,
            what="the router did not see its backend",
        )

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
        poll_until(
            lambda: _ready(endpoint_port), within=START_TIMEOUT, what="the endpoint was not ready"
        )
