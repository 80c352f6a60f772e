"""Every environment variable that the manifests and compose set is a real setting."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import (
    ROOT,
    SETTINGS,
    Rendered,
    compose_config,
    pod_containers,
    rendered,
    service_of_image,
)

# Third-party engines: the variables vosk-server's websocket/asr_server.py reads.
VOSK_VARIABLES = {
    "VOSK_SERVER_INTERFACE",
    "VOSK_SERVER_PORT",
    "VOSK_MODEL_PATH",
    "VOSK_SPK_MODEL_PATH",
    "VOSK_SAMPLE_RATE",
    "VOSK_ALTERNATIVES",
    "VOSK_SHOW_WORDS",
    "HOME",
}


def settings_variables(service: str) -> set[str]:
    """The environment variables a kikimimi service reads: prefix + each Settings field."""
    try:
        module = importlib.import_module(SETTINGS[service])
    except ImportError as exc:
        pytest.fail(f"{SETTINGS[service]} does not import ({exc}): its Settings are the truth")
    settings = module.Settings
    prefix = str(settings.model_config.get("env_prefix", ""))
    assert prefix, f"{SETTINGS[service]}.Settings has no env_prefix"
    return {f"{prefix}{name}".upper() for name in settings.model_fields}


def allowed(service: str) -> set[str]:
    return VOSK_VARIABLES if service == "vosk" else settings_variables(service)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("overlay_name", ["dev", "prod"])
def test_manifest_env_vars_are_settings(overlay_name: str) -> None:
    """Each env var a container of the overlay sets is a field of its service's Settings."""
    overlay: Rendered = rendered(overlay_name)
    unknown = []
    for d in overlay.workloads():
        for container in pod_containers(d):
            service = service_of_image(container["image"])
            names = {e["name"] for e in container.get("env", [])}
            unknown += [
                f"{d['metadata']['name']}/{container['name']}: {n}"
                for n in sorted(names - allowed(service))
            ]
    assert not unknown, "not a setting:\n" + "\n".join(unknown)


@pytest.mark.timeout(60)
def test_compose_env_vars_are_settings() -> None:
    """Each env var a compose service sets (environment and env_file) is a real setting."""
    config = compose_config()
    unknown = []
    for name, service in config["services"].items():
        kind = service_of_image(service["image"])
        env: dict[str, Any] = service.get("environment") or {}
        unknown += [f"{name}: {n}" for n in sorted(set(env) - allowed(kind))]
    assert not unknown, "not a setting:\n" + "\n".join(unknown)


@pytest.mark.timeout(30)
def test_manifests_set_the_settings_they_need() -> None:
    """The endpoint is told its router, and intermediates their engine, in every overlay."""
    for overlay_name in ("dev", "prod"):
        overlay = rendered(overlay_name)
        endpoint = overlay.get("Deployment", "endpoint")["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in endpoint["containers"][0]["env"]}
        assert env["ENDPOINT_ROUTER_ADDRESS"] == "dns:///router:50051"
        assert env["ENDPOINT_HOST"] == "0.0.0.0"
        for name in ("intermediate-ja", "intermediate-en"):
            pod = overlay.get("Deployment", name)["spec"]["template"]["spec"]
            env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
            engine = pod["initContainers"][0]
            port = engine["ports"][0]["containerPort"]
            assert env["INTERMEDIATE_ENGINES"] == f"ws://127.0.0.1:{port}"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "path",
    ["k8s/base/router/routes.yaml", "deploy/compose.routes.yaml", "config/routes.local.yaml"],
)
def test_route_tables_parse(path: str) -> None:
    """Every shipped route table is one the router accepts, routing ja and en."""
    from services.router.routes import parse_route_table

    table = parse_route_table((ROOT / path).read_text(), source=path)
    for process in ("asr", "nict-asr"):
        assert set(table.languages(process)) >= {"ja", "en"}


@pytest.mark.timeout(30)
def test_k8s_routes_name_existing_headless_services() -> None:
    """The k8s route table's backends are headless Services with that gRPC port."""
    from services.router.routes import parse_route_table

    table = parse_route_table((ROOT / "k8s/base/router/routes.yaml").read_text())
    overlay = rendered("prod")
    for backends in table.pools.values():
        for address in backends:
            match = re.fullmatch(r"dns:///([\w-]+):(\d+)", address)
            assert match, f"{address} is not a dns:/// address of a headless Service"
            host, port = match.groups()
            service = overlay.get("Service", host)
            assert service["spec"]["clusterIP"] == "None"
            assert int(port) in {p["port"] for p in service["spec"]["ports"]}


@pytest.mark.timeout(30)
def test_development_token_matches_its_hash() -> None:
    """deploy/dev-token hashes to the entry of the compose and dev-overlay token files."""
    import hashlib

    token = (ROOT / "deploy/dev-token").read_text().strip()
    digest = hashlib.sha256(token.encode()).hexdigest()
    from services.endpoint.auth import load_token_file

    for path in ("deploy/dev-tokens.sha256", "k8s/overlays/dev/dev-tokens.sha256"):
        assert set(load_token_file(Path(ROOT / path))) == {digest}, path
