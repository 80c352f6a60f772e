"""Offline checks of the Dockerfiles and docker-compose.yaml (no Docker daemon needed)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, compose_config, compose_env, run, run_compose_config, tool

DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
# The production base image: python:3.11-slim pinned by the digest of its multi-platform
# index (docs/deploy.md, "Images"). One value in every Dockerfile.
PINNED_BASE = (
    "python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7"
)
# Every service package with a __main__ gets an image.
SERVICES = {"endpoint", "router", "intermediate", "engine", "engine-stub"}
# What compose publishes on 127.0.0.1 by default (config/ports.txt).
PUBLISHED = {
    "endpoint": {8080},
    "router": {50051, 8081},
    "intermediate-ja": {50052, 8082},
    "intermediate-en": {50053, 8083},
    "engine-ja": {2700},
    "engine-en": {2701},
    "engine-stub": {2702},
    "vosk-ja": {2710},
    "vosk-en": {2711},
}


def stages(text: str) -> list[str]:
    """The Dockerfile's stages, each from its FROM line to the next."""
    parts = re.split(r"(?m)^(?=FROM )", text)
    # The comment that heads the next stage is that stage's, not this one's.
    return [re.sub(r"(?:\n(?:#[^\n]*)?)*\Z", "\n", p) for p in parts if p.startswith("FROM ")]


@pytest.mark.timeout(10)
def test_one_dockerfile_per_service() -> None:
    """docker/ holds exactly one Dockerfile per service."""
    assert {p.name.removesuffix(".Dockerfile") for p in DOCKERFILES} == SERVICES


@pytest.mark.timeout(60)
def test_hadolint_passes() -> None:
    """hadolint finds nothing in any Dockerfile (its ignores are commented in place)."""
    result = run([tool("hadolint"), *DOCKERFILES], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(10)
@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_follows_the_house_rules(path: Path) -> None:
    """Pinned BASE_IMAGE arg, no syntax line, multi-stage, non-root USER, exec-form CMD."""
    text = path.read_text()
    assert not re.search(r"(?im)^#\s*syntax=", text)
    assert re.search(rf"(?m)^ARG BASE_IMAGE={re.escape(PINNED_BASE)}$", text)
    parts = stages(text)
    assert parts[0].startswith("FROM ${BASE_IMAGE} AS builder")
    # The engine alone adds its dependencies and model to the builder's venv.
    last_builder = "engine-builder" if path.name == "engine.Dockerfile" else "builder"
    assert [p.splitlines()[0] for p in parts[1:-1]] == (
        ["FROM builder AS engine-builder"] if last_builder == "engine-builder" else []
    )
    runtime = parts[-1]
    assert f"COPY --from={last_builder} /opt/venv /opt/venv" in runtime
    user = re.findall(r"(?m)^USER (\S+)$", runtime)
    assert user == ["10001:10001"]
    cmds = re.findall(r"(?m)^CMD (.+)$", runtime)
    assert len(cmds) == 1
    assert cmds[0].startswith('["python", "-m", ')
    # Models are mounted or come with a package, never downloaded in the build.
    instructions = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert not re.search(r"(?i)\b(wget|curl)\b|huggingface|alphacephei", instructions)


@pytest.mark.timeout(10)
def test_dockerfiles_share_one_builder_stage() -> None:
    """The builder stage is the same text everywhere, so its layers are built once."""
    builders = {stages(p.read_text())[0] for p in DOCKERFILES}
    assert len(builders) == 1


@pytest.mark.timeout(10)
def test_only_the_engine_image_installs_the_engine_extra() -> None:
    """The shared builder installs the core dependencies and only fetches the `engine`
    extra's wheels; the engine's own stage installs them, so no relay image has them."""
    engine_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["engine"]
    assert any(r.startswith("faster-whisper") for r in engine_extra)
    assert any(r.startswith("pocketsphinx") for r in engine_extra)
    builder = stages(DOCKERFILES[0].read_text())[0]
    installs = [line for line in builder.splitlines() if "pip install" in line]
    assert all("requirements-engine.lock" not in line for line in installs), installs
    assert "pip download --no-cache-dir --require-hashes" in builder
    assert "--dest /opt/engine-wheels -r requirements-engine.lock" in builder
    engine_builder = stages((ROOT / "docker" / "engine.Dockerfile").read_text())[1]
    assert "-r requirements-engine.lock" in engine_builder
    assert "services.engine.models install" in engine_builder
    assert "services.engine.models install" not in builder


@pytest.mark.timeout(10)
def test_dockerignore_admits_only_the_build_inputs() -> None:
    """.dockerignore excludes everything but what the builder copies."""
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert admitted == {
        "pyproject.toml",
        "requirements-build.lock",
        "requirements.lock",
        "requirements-engine.lock",
        "README.md",
        "services",
        "engine_stub",
    }
    copied = set()
    for path in DOCKERFILES:
        for match in re.finditer(r"(?m)^COPY (?!--from)(.+) \S+$", path.read_text()):
            copied.update(match[1].split())
    assert copied == admitted


@pytest.mark.timeout(60)
def test_compose_config_is_valid() -> None:
    """`docker compose config -q` accepts docker-compose.yaml, with and without the vosk profile."""
    compose = tool("docker-compose")
    for extra in ([], ["--profile", "vosk"], ["--env-file", "deploy/compose.vosk.env"]):
        result = run([compose, *extra, "config", "-q"], timeout=60, cwd=ROOT, env=compose_env())
        assert result.returncode == 0, result.stderr


@pytest.mark.timeout(60)
def test_compose_publishes_on_loopback_only() -> None:
    """Every published port is bound to 127.0.0.1, on the documented host port."""
    services = compose_config()["services"]
    assert set(services) == set(PUBLISHED)
    for name, service in services.items():
        ports = service.get("ports", [])
        assert all(p["host_ip"] == "127.0.0.1" for p in ports), name
        assert {int(p["published"]) for p in ports} == PUBLISHED[name], name


@pytest.mark.timeout(60)
def test_compose_waits_for_healthy_dependencies() -> None:
    """Each kikimimi service has a readiness healthcheck and starts after healthy dependencies."""
    services = compose_config()["services"]
    expected = {
        "endpoint": {"router"},
        "router": {"intermediate-ja", "intermediate-en"},
        "intermediate-ja": {"engine-ja"},
        "intermediate-en": {"engine-en"},
    }
    for name, needs in expected.items():
        depends = services[name]["depends_on"]
        assert set(depends) == needs, name
        assert all(d["condition"] == "service_healthy" for d in depends.values()), name
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", name
        if name.startswith(("endpoint", "router", "intermediate")):
            assert "/readiness" in test[-1], name


@pytest.mark.timeout(60)
def test_compose_services_are_hardened() -> None:
    """Compose containers run read-only, without capabilities, with auth on at the endpoint."""
    services = compose_config()["services"]
    for name, service in services.items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    assert services["endpoint"]["environment"]["ENDPOINT_AUTH"] == "tokens"


@pytest.mark.timeout(60)
def test_vosk_env_file_switches_the_engines() -> None:
    """deploy/compose.vosk.env turns the profile on and points both intermediates at vosk."""
    result = run_compose_config("--env-file", "deploy/compose.vosk.env")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"vosk-ja", "vosk-en"} <= set(services)
    assert services["intermediate-ja"]["environment"]["INTERMEDIATE_ENGINES"] == "ws://vosk-ja:2700"
    assert services["intermediate-en"]["environment"]["INTERMEDIATE_ENGINES"] == "ws://vosk-en:2700"


@pytest.mark.timeout(60)
def test_compose_builds_on_the_pinned_base_unless_told_otherwise() -> None:
    """Compose passes BASE_IMAGE only when set, so the Dockerfiles' digest is the default."""
    for name, service in compose_config()["services"].items():
        if "build" in service:
            assert service["build"].get("args", {}).get("BASE_IMAGE") is None, name
    assert PINNED_BASE in (ROOT / "docs/deploy.md").read_text()
