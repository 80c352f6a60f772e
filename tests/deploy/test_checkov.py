"""checkov (offline, --skip-download) on the rendered overlays and the Dockerfiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import ROOT, Rendered, run, tool

# Every skipped check, and why it does not apply.
SKIPS = {
    # Images are referenced by immutable release tags in git; the release pipeline pins
    # digests at deploy time (`kustomize edit set image name@sha256:...`, docs/deploy.md).
    "CKV_K8S_43": "Image should use digest",
    # With immutable tags (and digests at release) IfNotPresent pulls the same image, spares
    # a registry round trip when a slow-starting engine pod restarts, and lets dev clusters
    # use side-loaded images.
    "CKV_K8S_15": "Image Pull Policy should be Always",
    # FROM ${BASE_IMAGE}: checkov cannot see through the ARG, whose default is
    # python:3.11-slim pinned by digest (checked by test_containers_offline.py).
    "CKV_DOCKER_7": "Ensure the base image uses a non latest version tag",
}


def checkov(target: list[str | Path], framework: str, workdir: Path) -> dict[str, Any]:
    result = run(
        [
            tool("checkov"),
            "--skip-download",
            "--quiet",
            "--compact",
            "--output",
            "json",
            "--framework",
            framework,
            "--skip-check",
            ",".join(SKIPS),
            *target,
        ],
        timeout=240,
        cwd=workdir,
        env={"HOME": str(workdir), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )
    report = json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else {}
    assert report, f"checkov gave no report (exit {result.returncode}):\n{result.stderr[-2000:]}"
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']}"
        for r in reports
        for c in r["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed:\n" + "\n".join(failed)
    return reports[0]


@pytest.mark.timeout(240)
def test_checkov_passes_on_overlay(overlay: Rendered, overlay_file: Path, tmp_path: Path) -> None:
    """checkov's Kubernetes checks pass on the rendered overlay, bar the justified skips."""
    report = checkov(["-f", overlay_file], "kubernetes", tmp_path)
    assert report["summary"]["passed"] > 100


@pytest.mark.timeout(240)
def test_checkov_passes_on_dockerfiles(tmp_path: Path) -> None:
    """checkov's Dockerfile checks pass on every Dockerfile, bar the justified skips."""
    report = checkov(["-d", ROOT / "docker"], "dockerfile", tmp_path)
    assert report["summary"]["passed"] > 20
