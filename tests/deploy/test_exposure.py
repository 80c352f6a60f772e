"""What the outside world can reach, and what the load balancer records (issue 13, item 8).

Only the public paths go through the Ingress to the endpoint; the load balancer keeps no
request log (it would hold `?access-token=` query strings); port 8080 of the endpoint is
open to the load balancer and same-namespace monitoring only; every pod can resolve names
on every kind of GKE DNS.
"""

from __future__ import annotations

import ipaddress

import pytest

from tests.deploy.conftest import MONITORING_PEER, Manifest, Rendered

PUBLIC = ("/", "/?access-token=x", "/demo/", "/demo/index.html", "/demo/app.js", "/demo")
INTERNAL = ("/metrics", "/readiness", "/healthz", "/metrics/", "/healthz?x=1", "/x", "/demox")
# Google's load balancer proxies and health checks (external Application Load Balancer).
LOAD_BALANCER_RANGES = [ipaddress.ip_network(n) for n in ("130.211.0.0/22", "35.191.0.0/16")]


def ingress_service(ingress: Manifest, url: str) -> str | None:
    """The Service an Ingress sends `url` to, by the Kubernetes path rules (Exact, Prefix:
    element-wise), the longest match winning; the defaultBackend otherwise; None for the
    load balancer's own 404."""
    path = url.split("?", 1)[0]
    best: tuple[int, str] | None = None
    for rule in ingress["spec"].get("rules", []):
        for entry in rule["http"]["paths"]:
            want, kind = entry["path"], entry["pathType"]
            assert kind in {"Exact", "Prefix"}, f"{want}: {kind} has no defined meaning"
            if kind == "Exact":
                hit = path == want
            else:
                prefix = want.rstrip("/")
                hit = path == prefix or path.startswith(prefix + "/") or want == "/"
            if hit and (best is None or len(want) > best[0]):
                best = (len(want), entry["backend"]["service"]["name"])
    if best:
        return best[1]
    default = ingress["spec"].get("defaultBackend")
    return default["service"]["name"] if default else None


@pytest.mark.timeout(30)
@pytest.mark.parametrize("url", PUBLIC)
def test_ingress_sends_the_public_paths_to_the_endpoint(prod: Rendered, url: str) -> None:
    """`/` (WebSocket and POST, any query) and the demo page under /demo/ reach the endpoint."""
    assert ingress_service(prod.get("Ingress", "endpoint"), url) == "endpoint"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("url", INTERNAL)
def test_ingress_never_sends_internal_paths_anywhere(prod: Rendered, url: str) -> None:
    """/metrics, /readiness, /healthz and every other path match no rule and no default."""
    assert ingress_service(prod.get("Ingress", "endpoint"), url) is None


@pytest.mark.timeout(30)
def test_load_balancer_keeps_no_request_log(prod: Rendered) -> None:
    """GCLB request logs hold full URLs (browsers' ?access-token=): off, or sampled at 0."""
    for backend in prod.of_kind("BackendConfig"):
        logging = backend["spec"].get("logging", {})
        assert logging.get("enable") is False or logging.get("sampleRate") == 0, logging


def peers_of_port(overlay: Rendered, app: str, port: int) -> list[Manifest]:
    """Every `from` peer of every policy rule admitting `port` of the pods of `app`."""
    peers: list[Manifest] = []
    for policy in overlay.of_kind("NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if selector.get("app.kubernetes.io/name", app) != app and selector != {
            "app.kubernetes.io/part-of": "kikimimi"
        }:
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if port in ports:
                assert rule.get("from"), f"{policy['metadata']['name']}: 8080 from anywhere"
                peers += rule["from"]
    return peers


@pytest.mark.timeout(30)
def test_endpoint_port_admits_only_load_balancer_and_monitoring(overlay: Rendered) -> None:
    """8080: the load balancer's ranges, same-namespace monitoring, Managed Prometheus."""
    peers = peers_of_port(overlay, "endpoint", 8080)
    assert peers
    for peer in peers:
        if "ipBlock" in peer:
            network = ipaddress.ip_network(peer["ipBlock"]["cidr"])
            assert any(network.subnet_of(r) for r in LOAD_BALANCER_RANGES), peer  # type: ignore[arg-type]
        elif "namespaceSelector" in peer:
            assert peer["namespaceSelector"] == {
                "matchLabels": {"kubernetes.io/metadata.name": "gmp-system"}
            }, peer
        else:
            assert peer["podSelector"]["matchLabels"] == MONITORING_PEER, peer
    if overlay.name == "prod":
        cidrs = {p["ipBlock"]["cidr"] for p in peers if "ipBlock" in p}
        assert cidrs == {"130.211.0.0/22", "35.191.0.0/16"}


@pytest.mark.timeout(30)
def test_dns_egress_works_on_every_gke_dns(overlay: Rendered) -> None:
    """kube-dns, NodeLocal DNSCache and Cloud DNS (the metadata server) on 53, UDP and TCP."""
    policy = overlay.get("NetworkPolicy", "allow-dns")["spec"]
    assert policy["podSelector"] == {}
    (rule,) = policy["egress"]
    assert {(p["port"], p["protocol"]) for p in rule["ports"]} == {(53, "UDP"), (53, "TCP")}
    cidrs = {p["ipBlock"]["cidr"] for p in rule["to"] if "ipBlock" in p}
    assert {"169.254.169.254/32", "169.254.20.10/32"} <= cidrs
    apps = {p["podSelector"]["matchLabels"]["k8s-app"] for p in rule["to"] if "podSelector" in p}
    assert apps == {"kube-dns", "node-local-dns"}
