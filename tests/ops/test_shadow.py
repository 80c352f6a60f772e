"""kikimimi-models shadow: a shadow pool's manifests from the real prod overlay."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.ops.modelstore import publish
from tests.deploy.conftest import KUBERNETES_VERSION, rendered, tool
from tests.ops.conftest import ROOT, models


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


@pytest.mark.timeout(120)
def test_shadow_pool_mounts_the_new_version_outside_the_primary_pool(tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.bin").write_text("another model")
    # Another model than the one the pool mounts (whisper-base): a NAME is the model, the
    # language is the Deployment's engine setting.
    ref = f"whisper-small/{publish(root, tmp_path / 'm', 'whisper-small').version}"
    result = models(
        root,
        "shadow",
        ref,
        "--overlay",
        "k8s/overlays/prod",
        "--deployment",
        "intermediate-ja",
        "--replicas",
        "2",
    )
    assert result.returncode == 0, result.stderr
    deployment, service = yaml.safe_load_all(result.stdout)

    prod = rendered("prod")
    primary = prod.get("Deployment", "intermediate-ja")
    primary_service = prod.get("Service", "intermediate-ja")
    assert (deployment["metadata"]["name"], service["metadata"]["name"]) == (
        "intermediate-ja-next",
        "intermediate-ja-next",
    )
    assert deployment["spec"]["replicas"] == 2
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert not selects(primary_service["spec"]["selector"], pod_labels)
    assert selects(service["spec"]["selector"], pod_labels)
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    # The router still reaches them: the NetworkPolicy that admits it selects them too.
    policy = prod.get("NetworkPolicy", "intermediate")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels)

    versions = yaml.safe_load((ROOT / "k8s/overlays/prod/model-versions.yaml").read_text())
    primary_model = versions["data"]["ja"]
    mounts = [m for c in containers(deployment) for m in c.get("volumeMounts", [])]
    assert [m["subPath"] for m in mounts if "subPath" in m] == [ref]
    primary_mounts = [m for c in containers(primary) for m in c.get("volumeMounts", [])]
    assert [m["subPath"] for m in primary_mounts if "subPath" in m] == [primary_model]
    # Apart from the version, the containers are the primary's.
    for mount in mounts:
        if mount.get("subPath") == ref:
            old = next(
                m
                for c in containers(primary)
                for m in c.get("volumeMounts", [])
                if m["name"] == mount["name"] and m["mountPath"] == mount["mountPath"]
            )
            mount["subPath"] = old["subPath"]
    assert containers(deployment) == containers(primary)

    manifests = tmp_path / "shadow.yaml"
    manifests.write_text(result.stdout)
    validated = subprocess.run(
        [
            str(tool("kubernetes-validate")),
            "--strict",
            "--quiet",
            "-k",
            KUBERNETES_VERSION,
            str(manifests),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr


@pytest.mark.timeout(60)
def test_an_unpublished_version_or_unknown_deployment_is_refused(tmp_path: Path) -> None:
    def shadow(*args: str) -> subprocess.CompletedProcess[str]:
        return models(tmp_path, "shadow", *args, "--overlay", "k8s/overlays/prod")

    unpublished = shadow("whisper-base/0123456789abcdef", "--deployment", "intermediate-ja")
    assert unpublished.returncode == 1
    assert f"whisper-base/0123456789abcdef: not published under {tmp_path}" in unpublished.stderr
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x").write_text("x")
    ref = f"whisper-base/{publish(tmp_path, tmp_path / 'm', 'whisper-base').version}"
    unknown = shadow(ref, "--deployment", "intermediate-fr")
    assert unknown.returncode == 1
    assert "the overlay has no Deployment named 'intermediate-fr'" in unknown.stderr
    # dev's engines run the model of their image: no model version mount to replace.
    image_model = models(
        None, "shadow", ref, "--overlay", "k8s/overlays/dev", "--deployment", "intermediate-ja"
    )
    assert image_model.returncode == 1
    assert "intermediate-ja: no container mounts a model version" in image_model.stderr
    not_a_version = shadow("whisper-base", "--deployment", "intermediate-ja")
    assert not_a_version.returncode == 1
    assert "whisper-base: not published" in not_a_version.stderr
