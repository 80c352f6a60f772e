"""Capacity in prod: warm spare room, intermediates scaled on engine slots, engine start-up
budgets from measured model-load times (issue 14, item 3)."""

from __future__ import annotations

import re
from decimal import Decimal
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest

from tests.deploy.conftest import (
    WARM_SPARE_PRIORITY_CLASS,
    Manifest,
    Rendered,
    pod_containers,
    service_of_image,
)

SLOT_METRIC = "kikimimi_intermediate_pool_slots"
# Measured model-load time (s) of each engine image, worst case seen on a loaded 2-core
# machine (docs/engines.md; docs/deploy.md, "Probes"): the start-up budget follows it.
MODEL_LOAD_SECONDS = {"engine-stub": 1.0, "engine": 14.0, "vosk": 60.0}
# The budget covers a cold node (page cache empty, the volume's first read, CPU shared):
# at least this many times the measured load, and not so much that a wedged start hides.
BUDGET_MARGIN = (3, 12)

_UNITS = {"": 1, "m": Decimal("0.001"), "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def quantity(text: str | int) -> Decimal:
    """A Kubernetes quantity ("200m", "2", "192Mi", "3Gi") as a number."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi)?", str(text))
    assert match, f"unsupported quantity {text!r}"
    return Decimal(match[1]) * _UNITS[match[2] or ""]


def pod_requests(deployment: Manifest) -> dict[str, Decimal]:
    totals = {"cpu": Decimal(0), "memory": Decimal(0)}
    for container in pod_containers(deployment):
        for resource, value in container["resources"]["requests"].items():
            totals[resource] += quantity(value)
    return totals


def intermediates(overlay: Rendered) -> list[Manifest]:
    return [d for d in overlay.workloads() if d["metadata"]["name"].startswith("intermediate-")]


@pytest.mark.timeout(30)
def test_prod_keeps_warm_spare_room_for_one_intermediate_pod(prod: Rendered) -> None:
    """The placeholder requests at least one intermediate pod's room, at negative priority."""
    (placeholder,) = prod.placeholders()
    assert placeholder["spec"]["replicas"] >= 1
    priority = prod.get("PriorityClass", WARM_SPARE_PRIORITY_CLASS)
    assert priority["value"] < 0, "preempted by every pod of default priority (0)"
    assert priority["preemptionPolicy"] == "Never"
    assert priority.get("globalDefault", False) is False
    (container,) = pod_containers(placeholder)
    resources = container["resources"]
    assert resources["limits"] == resources["requests"], "Guaranteed: never the first evicted"
    room = {k: quantity(v) for k, v in resources["requests"].items()}
    for pod in intermediates(prod):
        need = pod_requests(pod)
        assert room["cpu"] >= need["cpu"], (pod["metadata"]["name"], room, need)
        assert room["memory"] >= need["memory"], (pod["metadata"]["name"], room, need)
    assert placeholder["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 0


@pytest.mark.timeout(30)
def test_prod_scales_intermediates_on_busy_engine_slots(prod: Rendered) -> None:
    """Each intermediate HPA reads the busy-slot gauge, never CPU, below the pod's capacity."""
    for pod in intermediates(prod):
        name = pod["metadata"]["name"]
        hpa = prod.get("HorizontalPodAutoscaler", name)
        (metric,) = hpa["spec"]["metrics"]
        assert metric["type"] == "Pods", name
        assert metric["pods"]["metric"]["name"] == f"prometheus.googleapis.com|{SLOT_METRIC}|gauge"
        assert metric["pods"]["metric"]["selector"] == {
            "matchLabels": {"metric.labels.state": "busy"}
        }
        env = {
            e["name"]: e.get("value")
            for e in pod["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        capacity = int(env["INTERMEDIATE_ENGINE_CAPACITY"])
        target = quantity(metric["pods"]["target"]["averageValue"])
        assert 0 < target < capacity, (name, target, capacity)


@pytest.mark.timeout(30)
def test_the_scaling_metric_is_what_the_intermediate_exports() -> None:
    """The intermediate exports the gauge the HPAs read, with its `state` label."""
    from services.intermediate.metrics import Metrics

    no_pool = SimpleNamespace(targets=[])
    exported = generate_latest(Metrics(no_pool).registry).decode()  # type: ignore[arg-type]
    assert f"# TYPE {SLOT_METRIC} gauge" in exported


@pytest.mark.timeout(30)
def test_engine_startup_budgets_follow_model_load_time(overlay: Rendered) -> None:
    """Each engine's startupProbe allows a few times its measured model load, no more."""
    for pod in intermediates(overlay):
        engine = pod["spec"]["template"]["spec"]["initContainers"][0]
        probe = engine["startupProbe"]
        budget = probe["periodSeconds"] * probe["failureThreshold"]
        load = MODEL_LOAD_SECONDS[service_of_image(engine["image"])]
        low, high = BUDGET_MARGIN
        assert low * load <= budget <= max(high * load, 30), (
            pod["metadata"]["name"],
            engine["image"],
            budget,
        )
