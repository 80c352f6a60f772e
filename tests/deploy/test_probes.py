"""Every kubelet probe can pass: it targets what its container serves on the pod IP.

kubelet dials `tcpSocket` and `httpGet` probes at the pod IP, from the node, never inside
the container's network namespace. A process bound to 127.0.0.1 therefore fails every such
probe, and an engine sidecar that never passes its startupProbe keeps the intermediate of
its pod from ever starting (issue 13, item 1). `exec` probes run inside the container and
may use loopback.

The binding and the ports are read from the container's env as the service reads them
(`<PREFIX>HOST` and `<PREFIX>…PORT` of its Settings, vosk-server's `VOSK_SERVER_*`): a
manifest that leaves the bind address to a default is refused too, because every service's
own default is 127.0.0.1.
"""

from __future__ import annotations

import importlib

import pytest

from tests.deploy.conftest import SETTINGS, Manifest, Rendered, pod_containers, service_of_image

PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
# Addresses that include the pod IP.
ALL_INTERFACES = {"0.0.0.0", "::", "[::]"}
# vosk-server's websocket/asr_server.py reads these two.
VOSK_BIND, VOSK_PORT = "VOSK_SERVER_INTERFACE", "VOSK_SERVER_PORT"


def env_prefix(image: str) -> str:
    """ENGINE_, ENGINE_STUB_, ROUTER_, …: the Settings prefix of the image's service."""
    module = importlib.import_module(SETTINGS[service_of_image(image)])
    return str(module.Settings.model_config["env_prefix"])


def bind_variable(container: Manifest) -> tuple[str, str]:
    """(bind address variable, prefix of its port variables) for the container's image."""
    if service_of_image(container["image"]) == "vosk":
        return VOSK_BIND, VOSK_PORT
    prefix = env_prefix(container["image"])
    return f"{prefix}HOST", prefix


def binds_pod_ip(container: Manifest) -> bool:
    variable, _ = bind_variable(container)
    for entry in container.get("env", []):
        if entry["name"] != variable:
            continue
        if entry.get("value") in ALL_INTERFACES:
            return True
        field = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        return field in {"status.podIP", "status.podIPs"}
    return False


def served_ports(container: Manifest) -> set[int]:
    """The ports the container's process listens on, from its own port settings."""
    _, prefix = bind_variable(container)
    return {
        int(entry["value"])
        for entry in container.get("env", [])
        if entry["name"].startswith(prefix) and entry["name"].endswith("PORT") and "value" in entry
    }


def probe_port(container: Manifest, probe: Manifest) -> int | None:
    """The port number a network probe dials (a named port resolved), None for exec."""
    if "exec" in probe:
        return None
    handler = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc")
    assert handler is not None, f"{container['name']}: a probe with no handler: {probe}"
    port = handler["port"]
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert port in named, f"{container['name']}: probe port {port!r} is not a declared port"
    return int(named[port])


@pytest.mark.timeout(30)
def test_every_probe_targets_a_port_served_on_the_pod_ip(overlay: Rendered) -> None:
    """Each network probe dials a port its container's process listens on, bound to the pod IP."""
    problems = []
    for workload in overlay.of_kind("Deployment"):
        for container in pod_containers(workload):
            where = f"{overlay.name}: {workload['metadata']['name']}/{container['name']}"
            for kind in PROBES:
                probe = container.get(kind)
                if probe is None:
                    continue
                port = probe_port(container, probe)
                if port is None:
                    continue  # exec: runs inside the container
                if not binds_pod_ip(container):
                    variable, _ = bind_variable(container)
                    problems.append(
                        f"{where}: {kind} dials the pod IP, but {variable} does not bind it"
                    )
                if port not in served_ports(container):
                    problems.append(f"{where}: {kind} dials {port}, not a port it serves")
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(30)
def test_no_network_policy_admits_an_engine_port(overlay: Rendered) -> None:
    """Engines listen on the pod IP for kubelet only: no NetworkPolicy lets a peer reach them."""
    engine_ports = {
        p["containerPort"]
        for d in overlay.of_kind("Deployment")
        for c in d["spec"]["template"]["spec"].get("initContainers", [])
        for p in c.get("ports", [])
    }
    assert engine_ports
    for policy in overlay.of_kind("NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            ports = {p.get("port") for p in rule.get("ports", [{"port": None}])}
            assert None not in ports, f"{policy['metadata']['name']}: a rule for every port"
            assert not ports & engine_ports, f"{policy['metadata']['name']} admits an engine port"
