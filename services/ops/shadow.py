"""The manifests of a shadow pool: one language's intermediates with another model version.

From a rendered overlay it takes the Deployment (e.g. intermediate-ja) and the Service
that selects its pods, and returns copies named <name><suffix> whose engines mount the
new version, with a fixed number of replicas (no HPA, no PDB: a shadow carries no
client). The primary Service selects by `app.kubernetes.io/name` and
`kikimimi.io/language`; the NetworkPolicies admit by `app.kubernetes.io/name`, so the
copy's pods get the language label `<lang><suffix>` (e.g. `ja-next`): the primary pool
never sees them, the router reaches them through the copy's headless Service.
docs/operations.md, "Updating a model".

The model mount is found by its shape, not by the model's name: a mount of a
PersistentVolumeClaim volume whose subPath is a published version (NAME/VERSION, 16 hex
digits). A model NAME is the model (`whisper-base`), the same for every language (the
language is an engine setting), so the new version may be another model
(`whisper-small/…` for the pool that mounts `whisper-base/…`); which pool changes is the
Deployment named, never the model's name.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from services.ops.modelstore import VERSION_DIGITS

LANGUAGE_LABEL = "kikimimi.io/language"

Manifest = dict[str, Any]

_VERSION_PATH = re.compile(rf"^[a-z0-9][a-z0-9._-]{{0,62}}/[0-9a-f]{{{VERSION_DIGITS}}}$")


class ShadowError(Exception):
    pass


def _pod_spec(deployment: Manifest) -> Manifest:
    spec: Manifest = deployment["spec"]["template"]["spec"]
    return spec


def _model_mounts(spec: Manifest) -> list[Manifest]:
    """The volume mounts of published model versions (subPath NAME/VERSION of a claim)."""
    claims = {v["name"] for v in spec.get("volumes", []) if "persistentVolumeClaim" in v}
    return [
        mount
        for container in spec.get("initContainers", []) + spec["containers"]
        for mount in container.get("volumeMounts", [])
        if mount["name"] in claims and _VERSION_PATH.match(str(mount.get("subPath", "")))
    ]


def _relabel(labels: dict[str, str], suffix: str) -> None:
    if LANGUAGE_LABEL in labels:
        labels[LANGUAGE_LABEL] += suffix


def shadow_manifests(
    rendered: str, deployment_name: str, ref: str, suffix: str = "-next", replicas: int = 1
) -> list[Manifest]:
    """The shadow pool's Deployment and Service for the model version `ref` (NAME/VERSION)."""
    if not _VERSION_PATH.match(ref):
        raise ShadowError(
            f"{ref!r}: give the version as NAME/VERSION (e.g. whisper-base/478f49329cf1c9fd)"
        )
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    found = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment_name
    ]
    if not found:
        raise ShadowError(f"the overlay has no Deployment named {deployment_name!r}")
    deployment = copy.deepcopy(found[0])
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    if LANGUAGE_LABEL not in deployment["spec"]["selector"]["matchLabels"]:
        raise ShadowError(f"{deployment_name}: its selector has no {LANGUAGE_LABEL} label")
    services = [
        d
        for d in docs
        if d["kind"] == "Service"
        and d["spec"].get("selector")
        and all(pod_labels.get(k) == v for k, v in d["spec"]["selector"].items())
    ]
    if len(services) != 1:
        raise ShadowError(f"{deployment_name}: expected one Service selecting its pods")
    service = copy.deepcopy(services[0])

    spec = _pod_spec(deployment)
    mounts = _model_mounts(spec)
    if not mounts:
        raise ShadowError(
            f"{deployment_name}: no container mounts a model version (a subPath NAME/VERSION "
            "of a PersistentVolumeClaim volume, components/engine-models): nothing to shadow"
        )
    for mount in mounts:
        mount["subPath"] = ref

    for manifest in (deployment, service):
        manifest["metadata"] = {
            "name": manifest["metadata"]["name"] + suffix,
            "namespace": manifest["metadata"].get("namespace"),
            "labels": dict(manifest["metadata"].get("labels", {})),
        }
        if manifest["metadata"]["namespace"] is None:
            del manifest["metadata"]["namespace"]
        _relabel(manifest["metadata"]["labels"], suffix)
    deployment["spec"]["replicas"] = replicas
    _relabel(deployment["spec"]["selector"]["matchLabels"], suffix)
    _relabel(pod_labels, suffix)
    deployment["spec"]["template"]["metadata"]["labels"] = pod_labels
    _relabel(service["spec"]["selector"], suffix)
    for constraint in spec.get("topologySpreadConstraints", []):
        _relabel(constraint.get("labelSelector", {}).get("matchLabels", {}), suffix)
    deployment.pop("status", None)
    return [deployment, service]
