"""The committed deploy/environments.yaml agrees with the overlays it names."""

from __future__ import annotations

import pytest
import yaml

from services.ops.environments import DEFAULT_FILE, load_environments
from tests.ops.conftest import ROOT


@pytest.mark.timeout(30)
def test_each_environment_deploys_its_overlay_into_its_own_namespace() -> None:
    environments = load_environments(ROOT / DEFAULT_FILE)
    assert {e.name for e in environments.values() if e.production} == {"prod"}
    for environment in environments.values():
        assert environment.overlay, f"{environment.name}: no overlay for make deploy"
        kustomization = yaml.safe_load(
            (ROOT / environment.overlay / "kustomization.yaml").read_text()
        )
        assert kustomization["namespace"] == environment.namespace, environment.name
