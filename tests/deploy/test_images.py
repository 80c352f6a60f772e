"""The built images, run as their Kubernetes manifests run them (`make test-containers`).

Each container of the dev overlay starts from its image with its manifest's env, user,
read-only root file system and volumes (emptyDirs as tmpfs, ConfigMaps and Secrets from the
rendered overlay as read-only files), and is probed the way kubelet probes it: from the
host, at the container's own IP, outside its network namespace (issue 13, item 1). A
process bound to 127.0.0.1 fails here as it would on a cluster.

The prod engine (Whisper) runs from a read-only model mount (`NAME/VERSION` of a model root,
exactly as the engine-models component mounts it) with a read-only root file system, and
decodes real speech (issue 14, item 2).

These tests need the images built (`docker compose build`, tag `dev`) and a Docker daemon at
$DOCKER_HOST; `.ci/containers.sh` provides both and selects them with `-m containers`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import jiwer
import pytest

from tests.deploy.conftest import Manifest, Rendered, pod_containers, rendered
from tests.system.engine.engine_helpers import speak, stream

pytestmark = pytest.mark.containers

TAG = os.environ.get("KIKIMIMI_TAG", "dev")
# The longest a start-up may take here; the manifests' budgets are longer (cold nodes).
START_LIMIT = 120.0
POD_NAME = "pod-under-test"


def docker(*args: str, timeout: float = 60) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


@pytest.fixture(scope="module", autouse=True)
def daemon() -> None:
    if not os.environ.get("DOCKER_HOST"):
        pytest.fail("needs a Docker daemon and the built images: run `make test-containers`")
    docker("version", "--format", "{{.Server.Version}}")


def local_image(image: str) -> str:
    """`asia-…/kikimimi/engine:0.1.0` → `kikimimi/engine:dev`, the image compose built."""
    name = re.sub(r"[:@].*$", "", image).rsplit("/", 1)[-1]
    return f"kikimimi/{name}:{TAG}"


@dataclass
class Started:
    id: str
    ip: str

    def logs(self) -> str:
        result = subprocess.run(
            ["docker", "logs", "--tail", "40", self.id],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return result.stdout + result.stderr

    def running(self) -> bool:
        return docker("inspect", "-f", "{{.State.Running}}", self.id) == "true"


def env_args(container: Manifest) -> list[str]:
    args = []
    for entry in container.get("env", []):
        if "value" in entry:
            value = entry["value"]
        elif entry["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            value = POD_NAME
        else:
            raise AssertionError(f"no stand-in for {entry}")
        args += ["--env", f"{entry['name']}={value}"]
    return args


def readable_copy(files: dict[str, bytes], directory: Path) -> Path:
    directory.mkdir(parents=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
        (directory / name).chmod(0o444)
    directory.chmod(0o555)
    return directory


def volume_args(
    overlay: Rendered, pod: Manifest, container: Manifest, scratch: Path, models: Path | None
) -> list[str]:
    """docker flags giving the container its manifest's volumes."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    args = []
    for mount in container.get("volumeMounts", []):
        volume, path = volumes[mount["name"]], mount["mountPath"]
        sub = mount.get("subPath", "")
        if "emptyDir" in volume:
            # Writable by the pod's fsGroup, as kubelet makes an emptyDir.
            args += ["--tmpfs", f"{path}:rw,mode=1777"]
            continue
        if "configMap" in volume:
            data = {
                k: v.encode()
                for k, v in overlay.get("ConfigMap", volume["configMap"]["name"])["data"].items()
            }
        elif "secret" in volume:
            secret = overlay.get("Secret", volume["secret"]["secretName"])
            data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
        elif "persistentVolumeClaim" in volume:
            assert models is not None, f"{mount['name']}: no model root given"
            assert mount.get("readOnly") is True
            args += ["--volume", f"{models / sub}:{path}:ro"]
            continue
        else:
            raise AssertionError(f"no stand-in for volume {volume}")
        source = readable_copy(data, scratch / mount["name"])
        args += ["--volume", f"{source / sub if sub else source}:{path}:ro"]
    return args


def container_of(overlay: Rendered, workload: str, name: str) -> tuple[Manifest, Manifest]:
    """(pod spec, container) of a container of the overlay's Deployment."""
    deployment = overlay.get("Deployment", workload)
    (container,) = [c for c in pod_containers(deployment) if c["name"] == name]
    return deployment["spec"]["template"]["spec"], container


@contextmanager
def start(
    overlay: Rendered, workload: str, name: str, scratch: Path, models: Path | None = None
) -> Iterator[Started]:
    """The container running as its manifest says; removed on exit."""
    pod, container = container_of(overlay, workload, name)
    context = pod["securityContext"] | container.get("securityContext", {})
    user = f"{context['runAsUser']}:{context['runAsGroup']}"
    args = ["run", "--detach", "--user", user]
    if context.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if context.get("capabilities", {}).get("drop") == ["ALL"]:
        args += ["--cap-drop", "ALL"]
    if context.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges:true"]
    args += env_args(container)
    args += volume_args(overlay, pod, container, scratch, models)
    image = local_image(container["image"])
    command = [*container.get("command", []), *container.get("args", [])]
    cid = docker(*args, image, *command)
    try:
        ip = docker(
            "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", cid
        )
        assert ip, "the container has no IP on the bridge network"
        yield Started(cid, ip)
    finally:
        subprocess.run(
            ["docker", "rm", "--force", cid], capture_output=True, timeout=60, check=False
        )


def probe_once(started: Started, container: Manifest, probe: Manifest) -> str | None:
    """One probe as kubelet makes it, from outside the container: None when it passes."""
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    timeout = float(probe.get("timeoutSeconds", 1))
    if "tcpSocket" in probe:
        port = named.get(probe["tcpSocket"]["port"], probe["tcpSocket"]["port"])
        try:
            socket.create_connection((started.ip, int(port)), timeout=timeout).close()
        except OSError as exc:
            return f"tcp {started.ip}:{port}: {exc}"
        return None
    if "httpGet" in probe:
        get = probe["httpGet"]
        port = named.get(get["port"], get["port"])
        try:
            response = httpx.get(f"http://{started.ip}:{port}{get['path']}", timeout=timeout)
        except httpx.HTTPError as exc:
            return f"GET {started.ip}:{port}{get['path']}: {exc!r}"
        return None if 200 <= response.status_code < 400 else f"HTTP {response.status_code}"
    raise AssertionError(f"no stand-in for probe {probe}")


def passes_probes(started: Started, container: Manifest) -> None:
    """The startupProbe passes within its budget (capped), then the livenessProbe passes."""
    startup = container["startupProbe"]
    budget = min(START_LIMIT, startup["periodSeconds"] * startup["failureThreshold"])
    deadline = time.monotonic() + budget
    while (failure := probe_once(started, container, startup)) is not None:
        if not started.running():
            pytest.fail(
                f"{container['name']} exited before its startupProbe passed:\n{started.logs()}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"startupProbe never passed in {budget} s ({failure}):\n{started.logs()}")
        time.sleep(min(1.0, startup["periodSeconds"]))  # kubelet's period, shortened
    failure = probe_once(started, container, container["livenessProbe"])
    assert failure is None, f"livenessProbe failed after start-up: {failure}\n{started.logs()}"


DEV_CONTAINERS = [
    ("endpoint", "endpoint"),
    ("router", "router"),
    ("intermediate-ja", "engine"),
    ("intermediate-ja", "intermediate"),
    ("intermediate-en", "engine"),
    ("intermediate-en", "intermediate"),
]


@pytest.mark.timeout(START_LIMIT + 60)
@pytest.mark.parametrize(("workload", "name"), DEV_CONTAINERS, ids=lambda v: str(v))
def test_container_passes_its_probes_from_outside(workload: str, name: str, tmp_path: Path) -> None:
    """Started as the dev overlay starts it, the container passes kubelet-style probes."""
    overlay = rendered("dev")
    _, container = container_of(overlay, workload, name)
    with start(overlay, workload, name, tmp_path) as started:
        passes_probes(started, container)


def model_root_from_image(engine: Manifest, mount: Manifest, root: Path) -> Path:
    """A model root holding the version the manifest mounts: the Whisper model copied out of
    the engine image (joined there at build time), made read-only like a published version."""
    image = local_image(engine["image"])
    source = docker("run", "--rm", image, "python", "-m", "services.engine.models", "path")
    target = root / mount["subPath"]
    target.parent.mkdir(parents=True)
    cid = docker("create", image)
    try:
        docker("cp", f"{cid}:{source}", str(target), timeout=120)
    finally:
        docker("rm", cid)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    return root


@pytest.mark.timeout(START_LIMIT + 120)
def test_prod_engine_decodes_from_a_read_only_model_mount(tmp_path: Path) -> None:
    """prod's English engine: Whisper from a read-only NAME/VERSION mount, read-only root
    file system, scratch on tmpfs; its probes pass from outside and it recognises speech."""
    overlay = rendered("prod")
    _, engine = container_of(overlay, "intermediate-en", "engine")
    (mount,) = [m for m in engine["volumeMounts"] if m["name"] == "models"]
    env = {e["name"]: e.get("value") for e in engine["env"]}
    assert env["ENGINE_WHISPER_MODEL_DIR"] == mount["mountPath"]
    models = model_root_from_image(engine, mount, tmp_path / "models")
    try:
        with start(overlay, "intermediate-en", "engine", tmp_path / "scratch", models) as started:
            passes_probes(started, engine)
            mounts = docker(
                "inspect", "-f", "{{range .Mounts}}{{.Destination}}={{.RW}} {{end}}", started.id
            )
            assert f"{mount['mountPath']}=false" in mounts.split(), mounts
            assert docker("inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", started.id) == "true"
            sentence = "the meeting has been moved to three thirty on thursday afternoon"
            pcm = speak(sentence, "slt", tmp_path)
            transcript = asyncio.run(stream(f"ws://{started.ip}:2700", pcm, frame_bytes=8000))
            assert transcript.close_code == 1000, started.logs()
            heard = re.sub(
                r"[^a-z' ]", " ", transcript.text.lower().replace("3:30", "three thirty")
            )
            assert jiwer.wer(sentence, " ".join(heard.split())) <= 0.2, transcript.text
    finally:
        for path in [models, *models.rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(models)


# The engine's heavy dependencies: its extra in pyproject.toml and what faster-whisper pulls in.
ENGINE_ONLY = ("faster-whisper", "pocketsphinx", "ctranslate2", "onnxruntime", "av")
WHICH_INSTALLED = (
    "import importlib.metadata as m, sys\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        print(name, m.version(name))\n"
    "    except m.PackageNotFoundError:\n"
    "        pass\n"
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("image", ["endpoint", "router", "intermediate", "engine-stub", "engine"])
def test_only_the_engine_image_carries_the_engine_dependencies(image: str) -> None:
    """faster-whisper, pocketsphinx, CTranslate2, ONNX Runtime and PyAV are in the engine
    image only (the `engine` extra); every other image runs without them."""
    installed = docker(
        "run", "--rm", f"kikimimi/{image}:{TAG}", "python", "-c", WHICH_INSTALLED, *ENGINE_ONLY
    ).splitlines()
    names = [line.split()[0] for line in installed]
    assert names == (list(ENGINE_ONLY) if image == "engine" else []), installed
