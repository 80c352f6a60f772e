"""The whole kikimimi stack as real processes on free loopback ports, for tests.

`Stack` starts engines, intermediates, a router (with a route table file it writes) and
an endpoint, each configured only by its environment variables, exactly as `make run`
and the containers do. Tests compose the topology they need:

    with Stack(tmp_path) as stack:
        ja = stack.intermediate("ja", [stack.engine_stub("ja")])
        router = stack.router({"ja": [ja]})
        endpoint = stack.endpoint(router)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.http import get_json_blocking
from tests.support.processes import (
    START_TIMEOUT,
    Service,
    ServiceGroup,
    free_port,
    start_service,
)
from tests.support.timing import poll_until

READY_TIMEOUT = 30.0


def wait_ready(service: Service, timeout: float = READY_TIMEOUT) -> None:
    port = service.ports["http"]
    poll_until(
        lambda: get_json_blocking(f"http://127.0.0.1:{port}/readiness")[0] == 200,
        within=timeout,
        what=f"{service.name} was not ready",
    )


class Stack(ServiceGroup):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__()
        self.tmp_path = tmp_path
        # Variables every service started from now on gets too (e.g. OTEL_* for tracing).
        self.extra_env: dict[str, str] = {}

    def _start(
        self,
        name: str,
        module: str,
        env: dict[str, str],
        wait_port: int,
        ports: dict[str, int],
        timeout: float = START_TIMEOUT,
    ) -> Service:
        service = start_service(
            name, module, self.extra_env | env, wait_port, ports, timeout=timeout
        )
        self.services.append(service)
        return service

    def engine_stub(
        self, name: str = "engine", port: int | None = None, wait: bool = True, **settings: Any
    ) -> Service:
        """engine_stub with ENGINE_STUB_<NAME>=value for each keyword.

        `port`: listen there (e.g. to restart an engine where it was); `wait=False`: return
        at once, before the port opens (a slow start).
        """
        port = port or free_port()
        env = {f"ENGINE_STUB_{k.upper()}": str(v) for k, v in settings.items()}
        env |= {"ENGINE_STUB_PORT": str(port), "ENGINE_STUB_LOG_FORMAT": "json"}
        if not wait:
            service = start_service(name, "engine_stub", self.extra_env | env, None, {"ws": port})
            self.services.append(service)
            return service
        return self._start(
            name,
            "engine_stub",
            env,
            port,
            {"ws": port},
            timeout=START_TIMEOUT + float(settings.get("startup_delay", 0)),
        )

    def pocketsphinx(self, name: str = "engine-en", **settings: Any) -> Service:
        port = free_port()
        env = {"ENGINE_RECOGNIZER": "pocketsphinx"}
        env |= {f"ENGINE_{k.upper()}": str(v) for k, v in settings.items()}
        env |= {"ENGINE_PORT": str(port), "ENGINE_LOG_FORMAT": "json"}
        return self._start(name, "services.engine", env, port, {"ws": port}, timeout=90)

    def whisper(self, language: str, name: str = "", **settings: Any) -> Service:
        """The Whisper engine of the project (the model `make` installs) for `language`."""
        port = free_port()
        env = {"ENGINE_RECOGNIZER": "whisper", "ENGINE_LANGUAGE": language}
        env |= {f"ENGINE_{k.upper()}": str(v) for k, v in settings.items()}
        env |= {"ENGINE_PORT": str(port), "ENGINE_LOG_FORMAT": "json"}
        return self._start(
            name or f"engine-{language}", "services.engine", env, port, {"ws": port}, timeout=90
        )

    def intermediate(
        self, name: str, engines: list[Service | int], wait: bool = True, **settings: Any
    ) -> Service:
        """An intermediate over `engines` (services, or bare ports where an engine will be)."""
        grpc_port, http_port = free_port(), free_port()
        settings.setdefault("engine_capacity", 64)  # engine_stub has no capacity of its own
        env = {f"INTERMEDIATE_{k.upper()}": str(v) for k, v in settings.items()}
        env |= {
            "INTERMEDIATE_NAME": name,
            "INTERMEDIATE_GRPC_PORT": str(grpc_port),
            "INTERMEDIATE_HTTP_PORT": str(http_port),
            "INTERMEDIATE_ENGINES": ",".join(
                f"ws://127.0.0.1:{e if isinstance(e, int) else e.ports['ws']}" for e in engines
            ),
            "INTERMEDIATE_LOG_FORMAT": "json",
        }
        service = self._start(
            name, "services.intermediate", env, http_port, {"grpc": grpc_port, "http": http_port}
        )
        if wait:
            wait_ready(service)
        return service

    def write_routes(
        self,
        pools: dict[str, list[Service]],
        routes: list[dict[str, Any]] | None = None,
        path: Path | None = None,
    ) -> Path:
        """Write a route table: every pool name is also a language, for asr and nict-asr."""
        path = path or self.tmp_path / "routes.yaml"
        table = {
            "pools": {
                name: {"backends": [f"127.0.0.1:{s.ports['grpc']}" for s in services]}
                for name, services in pools.items()
            },
            "routes": routes
            if routes is not None
            else [
                {"process": ["asr", "nict-asr"], "language": name, "pool": name} for name in pools
            ],
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(table))
        tmp.replace(path)  # atomic, as a ConfigMap update is
        return path

    def router(
        self,
        pools: dict[str, list[Service]],
        routes: list[dict[str, Any]] | None = None,
        wait_healthy: bool = True,
        **settings: Any,
    ) -> Service:
        grpc_port, http_port = free_port(), free_port()
        routes_file = self.write_routes(pools, routes)
        env = {f"ROUTER_{k.upper()}": str(v) for k, v in settings.items()}
        env |= {
            "ROUTER_GRPC_PORT": str(grpc_port),
            "ROUTER_HTTP_PORT": str(http_port),
            "ROUTER_ROUTES_FILE": str(routes_file),
            "ROUTER_RELOAD_INTERVAL": "0.2",
            "ROUTER_LOG_FORMAT": "json",
        }
        service = self._start(
            "router", "services.router", env, http_port, {"grpc": grpc_port, "http": http_port}
        )
        service.routes_file = routes_file  # type: ignore[attr-defined]
        if wait_healthy:
            wanted = sum(len(v) for v in pools.values())
            poll_until(
                lambda: _healthy_backends(http_port) >= wanted,
                within=READY_TIMEOUT,
                what="the router did not see every backend healthy",
            )
        return service

    def endpoint(self, router: Service, **settings: Any) -> Service:
        port = free_port()
        env = {f"ENDPOINT_{k.upper()}": str(v) for k, v in settings.items()}
        env |= {
            "ENDPOINT_PORT": str(port),
            "ENDPOINT_ROUTER_ADDRESS": f"127.0.0.1:{router.ports['grpc']}",
            "ENDPOINT_LOG_FORMAT": "json",
        }
        return self._start("endpoint", "services.endpoint", env, port, {"http": port})


def _healthy_backends(router_http_port: int) -> int:
    _, body = get_json_blocking(f"http://127.0.0.1:{router_http_port}/readiness")
    seen = {
        backend["address"]
        for route in body.get("routes", [])
        for backend in route["backends"]
        if backend["healthy"]
    }
    return len(seen)
