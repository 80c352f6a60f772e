"""Offline checks of components/monitoring: the alert rules and the Grafana dashboard use
only metrics the services export, and say what an operator needs."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.intermediate.config import Settings
from services.intermediate.pool import Pool, PoolSettings
from tests.deploy.conftest import ROOT, Rendered, run, tool
from tests.deploy.test_kustomize import SCHEMAS, VALIDATE_CRDS

COMPONENT = ROOT / "k8s" / "components" / "monitoring"
DASHBOARD = COMPONENT / "kikimimi-dashboard.json"
DASHBOARD_COPY = ROOT / "deploy" / "grafana" / "kikimimi-dashboard.json"
POOL = PoolSettings.of(Settings())

# What a sample name adds to its metric family's name, by family type.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
PROMQL_WORDS |= {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}


def registries() -> Iterator[CollectorRegistry]:
    """The registry of every services/<name>/metrics.py (the intermediate's over a pool)."""
    for path in sorted((ROOT / "services").glob("*/metrics.py")):
        module = importlib.import_module(f"services.{path.parent.name}.metrics")
        if path.parent.name == "intermediate":
            yield module.Metrics(Pool(["ws://127.0.0.1:9"], POOL)).registry
        else:
            yield module.Metrics().registry


def exported_names() -> set[str]:
    """Every sample name /metrics can show, labelled children created or not."""
    names = set()
    for registry in registries():
        for family in registry.collect():
            names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels and keywords aside)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings: label values, regexes
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    grouping = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
    expr = re.sub(grouping, "", expr)
    names = re.findall(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return {n for n in names if n.lower() not in PROMQL_WORDS}


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((COMPONENT / "rules.yaml").read_text(encoding="utf-8"))
    return [rule for group in doc["spec"]["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def panels() -> list[dict[str, Any]]:
    top = dashboard()["panels"]
    nested = [p for row in top for p in row.get("panels", [])]
    return [p for p in top + nested if p["type"] != "row"]


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    queries = [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", text)
            queries.append((f"${variable['name']}", inner[1] if inner else text))
    return queries


@pytest.mark.timeout(30)
def test_every_tier_has_a_metrics_registry() -> None:
    """The names the rules and dashboard are checked against come from every tier."""
    names = exported_names()
    for tier in ("endpoint", "router", "intermediate"):
        assert f"kikimimi_{tier}_active_sessions" in names, tier


@pytest.mark.timeout(30)
def test_metric_name_extraction_sees_only_metrics() -> None:
    """The PromQL scanner finds the metrics and ignores functions, labels and keywords."""
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{ns="$x", le=~"1|2"}[5m])))'
        " / on (pod) group_left () max without (job) (b) or vector(0) and c:rec:rate5m"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c:rec:rate5m"}


@pytest.mark.timeout(30)
def test_alert_rules_use_only_exported_metrics() -> None:
    """Every metric in a rule's expression is exported by a service or recorded by a rule."""
    known = exported_names() | {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        where = rule.get("alert") or rule["record"]
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{where}: {sorted(unknown)} exported by no service"
        assert metric_names(rule["expr"]), where


@pytest.mark.timeout(30)
def test_dashboard_uses_only_exported_metrics() -> None:
    """Every metric in every dashboard query is exported by a service."""
    known = exported_names()
    for where, expr in dashboard_queries():
        assert metric_names(expr), where
        unknown = metric_names(expr) - known
        assert not unknown, f"{where}: {sorted(unknown)} exported by no service"


@pytest.mark.timeout(30)
def test_every_alert_has_a_duration_a_severity_and_a_summary() -> None:
    """Each alert waits a `for`, carries a severity label, a summary and a runbook link."""
    assert alerts()
    for alert in alerts():
        name = alert["alert"]
        assert re.fullmatch(r"[1-9][0-9]*[smh]", alert["for"]), name
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        assert alert["annotations"]["summary"].strip(), name
        runbook = alert["annotations"]["runbook"]
        path, _, anchor = runbook.partition("#")
        assert anchor == name.lower(), name
        sections = (ROOT / path).read_text(encoding="utf-8")
        assert f"### {name}\n" in sections, f"{path} has no section {name}"


@pytest.mark.timeout(30)
def test_alerts_cover_the_failures_an_operator_watches() -> None:
    """There are alerts for the error ratio, no engine up, readiness flapping and drain overrun."""
    by_name = {a["alert"]: a for a in alerts()}
    assert {
        "KikimimiErrorRatioHigh",
        "KikimimiNoEngineUp",
        "KikimimiReadinessFlapping",
        "KikimimiDrainOverrun",
    } <= set(by_name)
    assert "by (language)" in by_name["KikimimiNoEngineUp"]["expr"]


@pytest.mark.timeout(30)
def test_dashboard_has_the_panels_of_the_issue() -> None:
    """The dashboard shows sessions, latency percentiles, pool slots, engines, failovers and
    the shadow mismatch rate."""
    titles = [p["title"].lower() for p in panels()]
    for wanted in ("sessions", "latency", "pool slots", "engines", "failovers", "shadow mismatch"):
        assert any(wanted in t for t in titles), f"no panel about {wanted}"
    for panel in panels():
        if "latency" in panel["title"].lower():
            exprs = " ".join(t["expr"] for t in panel["targets"])
            assert "histogram_quantile(0.99," in exprs, panel["title"]


@pytest.mark.timeout(30)
def test_dashboard_panels_are_well_formed() -> None:
    """Panel ids are unique, each target has its own refId, and every query reads the
    dashboard's data source and namespace variables."""
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard()["uid"]
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert 'namespace="$namespace"' in target["expr"], panel["title"]


@pytest.mark.timeout(60)
def test_prod_ships_the_rules_and_the_dashboard(prod: Rendered) -> None:
    """prod has the Rules and the dashboard ConfigMap (labelled for the Grafana sidecar), the
    same dashboard that deploy/grafana holds."""
    assert prod.get("Rules", "kikimimi")["spec"]["groups"]
    config_map = prod.get("ConfigMap", "kikimimi-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["kikimimi-dashboard.json"]) == dashboard()
    assert json.loads(DASHBOARD_COPY.read_text(encoding="utf-8")) == dashboard()


@pytest.mark.timeout(60)
def test_rules_schema_rejects_a_misspelt_field(prod: Rendered) -> None:
    """The Rules schema is strict: an alert with `annotation` for `annotations` is an error."""
    bad = json.loads(json.dumps(prod.get("Rules", "kikimimi")))
    rule = next(r for g in bad["spec"]["groups"] for r in g["rules"] if "alert" in r)
    rule["annotation"] = rule.pop("annotations")
    result = run(
        [tool("python"), "-c", VALIDATE_CRDS, SCHEMAS], timeout=60, input=json.dumps([bad])
    )
    assert result.returncode == 1
    assert "annotation" in result.stdout
