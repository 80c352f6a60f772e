"""make diff / deploy / undeploy ENV=… on top of kikimimi-kube, against the fake kubectl."""

from __future__ import annotations

import subprocess

import pytest

from tests.ops.conftest import ROOT, FakeKube

DEV = ["--context", "kind-dev", "--namespace", "kikimimi-dev"]
PROD = ["--context", "gke_p_asia-northeast1_prod", "--namespace", "kikimimi"]


def make(fake_kube: FakeKube, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        env=fake_kube.env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(180)
def test_deploy_diffs_then_applies_the_environments_overlay(fake_kube: FakeKube) -> None:
    # kubectl diff exits 1 when it found differences: that is no failure of `make diff`.
    fake_kube.env["FAKE_KUBECTL_EXIT"] = "1"
    assert make(fake_kube, "diff", "ENV=dev").returncode == 0
    fake_kube.env["FAKE_KUBECTL_EXIT"] = "0"
    result = make(fake_kube, "deploy", "ENV=dev")
    assert result.returncode == 0, result.stderr
    assert make(fake_kube, "undeploy", "ENV=dev").returncode == 0
    assert fake_kube.calls() == [
        [*DEV, "diff", "-k", "k8s/overlays/dev"],
        [*DEV, "diff", "-k", "k8s/overlays/dev"],
        [*DEV, "apply", "-k", "k8s/overlays/dev"],
        [*DEV, "delete", "-k", "k8s/overlays/dev", "--ignore-not-found"],
    ]


@pytest.mark.timeout(180)
def test_production_deploy_without_a_terminal_needs_confirm(fake_kube: FakeKube) -> None:
    refused = make(fake_kube, "deploy", "ENV=prod")
    assert refused.returncode != 0
    assert "--yes-i-mean prod" in refused.stderr
    assert fake_kube.calls() == [[*PROD, "diff", "-k", "k8s/overlays/prod"]]
    confirmed = make(fake_kube, "deploy", "ENV=prod", "CONFIRM=prod")
    assert confirmed.returncode == 0, confirmed.stderr
    assert fake_kube.calls()[-1] == [*PROD, "apply", "-k", "k8s/overlays/prod"]


@pytest.mark.timeout(60)
def test_no_or_unknown_environment_is_refused(fake_kube: FakeKube) -> None:
    missing = make(fake_kube, "deploy")
    assert missing.returncode != 0
    assert "ENV is not set" in missing.stderr
    unknown = make(fake_kube, "undeploy", "ENV=staging")
    assert unknown.returncode != 0
    assert "unknown environment 'staging'" in unknown.stderr
    assert fake_kube.calls() == []
