"""Offline checks of the kustomize overlays: they render, validate and hang together."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.deploy.conftest import (
    KUBERNETES_VERSION,
    MONITORING_PEER,
    ROOT,
    Manifest,
    Rendered,
    pod_containers,
    rendered,
    run,
    tool,
)

SCHEMAS = Path(__file__).resolve().parent / "schemas"
WORKLOADS = ("endpoint", "router", "intermediate-ja", "intermediate-en")

# jsonschema comes with kubernetes-validate in the tool venv, not the project's.
VALIDATE_CRDS = """
import json, pathlib, sys
import jsonschema
schemas, docs = pathlib.Path(sys.argv[1]), json.load(sys.stdin)
problems = []
for doc in docs:
    group = doc["apiVersion"].split("/")[0].split(".")[0]
    version = doc["apiVersion"].split("/")[-1]
    schema = json.loads((schemas / f"{doc['kind'].lower()}-{group}-{version}.json").read_text())
    for error in jsonschema.Draft202012Validator(schema).iter_errors(doc):
        where = ".".join(str(p) for p in error.absolute_path)
        problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {error.message}")
print("\\n".join(problems))
sys.exit(1 if problems else 0)
"""


def schema_file(doc: Manifest) -> Path:
    group = doc["apiVersion"].split("/")[0].split(".")[0]
    version = doc["apiVersion"].split("/")[-1]
    return SCHEMAS / f"{doc['kind'].lower()}-{group}-{version}.json"


def is_custom(doc: Manifest) -> bool:
    """A kind of a GKE CRD (its API group is not a Kubernetes one)."""
    group = doc["apiVersion"].rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def ingress_paths(ingress: Manifest) -> list[Manifest]:
    return [p for rule in ingress["spec"].get("rules", []) for p in rule["http"]["paths"]]


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", ["base", "overlays/dev", "overlays/prod"])
def test_kustomization_renders(path: str) -> None:
    """`kubectl kustomize` renders the base and every overlay without error."""
    kubectl_result = run(["kubectl", "kustomize", ROOT / "k8s" / path], timeout=60)
    assert kubectl_result.returncode == 0, kubectl_result.stderr
    assert "kind: Deployment" in kubectl_result.stdout


@pytest.mark.timeout(120)
def test_overlay_validates_strictly(overlay: Rendered, overlay_file: Path) -> None:
    """kubernetes-validate --strict accepts every built-in resource and finds no unknown kind."""
    result = run(
        [
            tool("kubernetes-validate"),
            "--strict",
            "--quiet",
            "-k",
            KUBERNETES_VERSION,
            overlay_file,
        ],
        timeout=120,
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    custom = {(d["kind"], d["apiVersion"]) for d in overlay.docs if is_custom(d)}
    problems = []
    for line in lines:
        missing = re.search(r"Couldn't find schema for kind (\S+) with api version (\S+)", line)
        if missing and (missing[1], missing[2]) in custom:
            continue  # checked against tests/deploy/schemas by the next test
        problems.append(line)
    assert not problems, "\n".join(problems)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(60)
def test_custom_resources_match_their_schemas(overlay: Rendered) -> None:
    """Every GKE custom resource has a schema in tests/deploy/schemas and matches it."""
    custom = [d for d in overlay.docs if is_custom(d)]
    for doc in custom:
        assert schema_file(doc).exists(), f"no schema for {doc['kind']} {doc['apiVersion']}"
    python = tool("python")
    result = run([python, "-c", VALIDATE_CRDS, SCHEMAS], timeout=60, input=json.dumps(custom))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(30)
def test_schemas_reject_unknown_fields() -> None:
    """The CRD schemas are strict: a misspelt BackendConfig field is an error."""
    doc = rendered("prod").get("BackendConfig", "endpoint")
    bad = json.loads(json.dumps(doc))
    bad["spec"]["timeoutSecs"] = 3600
    result = run(
        [tool("python"), "-c", VALIDATE_CRDS, SCHEMAS], timeout=30, input=json.dumps([bad])
    )
    assert result.returncode == 1
    assert "timeoutSecs" in result.stdout


@pytest.mark.timeout(30)
def test_selectors_match_pod_labels(overlay: Rendered) -> None:
    """Deployment, Service, PDB, NetworkPolicy and PodMonitoring selectors each select pods."""
    deployments = overlay.workloads()
    assert {d["metadata"]["name"] for d in deployments} == set(WORKLOADS)
    for d in deployments:
        selector = d["spec"]["selector"]["matchLabels"]
        assert labels_match(selector, pod_labels(d)), d["metadata"]["name"]
        others = [o for o in deployments if o is not d]
        assert not any(labels_match(selector, pod_labels(o)) for o in others), (
            f"{d['metadata']['name']}'s selector also selects another Deployment's pods"
        )
        for spread in d["spec"]["template"]["spec"]["topologySpreadConstraints"]:
            assert spread["labelSelector"]["matchLabels"] == selector
    for service in overlay.of_kind("Service"):
        name = service["metadata"]["name"]
        chosen = [
            d for d in deployments if labels_match(service["spec"]["selector"], pod_labels(d))
        ]
        assert [d["metadata"]["name"] for d in chosen] == [name], f"Service {name}"
    for pdb in overlay.of_kind("PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        chosen = [d["metadata"]["name"] for d in deployments if labels_match(sel, pod_labels(d))]
        assert chosen == [pdb["metadata"]["name"]], f"PDB {pdb['metadata']['name']}"
    for policy in overlay.of_kind("NetworkPolicy"):
        sel = policy["spec"]["podSelector"].get("matchLabels", {})
        if sel:
            assert any(labels_match(sel, pod_labels(d)) for d in deployments), policy
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    peer_sel = peer["podSelector"]["matchLabels"]
                    if peer_sel == MONITORING_PEER:
                        continue  # the namespace's own monitoring, not a kikimimi tier
                    assert any(labels_match(peer_sel, pod_labels(d)) for d in deployments), peer
    for monitor in overlay.of_kind("PodMonitoring"):
        sel = monitor["spec"]["selector"]["matchLabels"]
        assert all(labels_match(sel, pod_labels(d)) for d in deployments)


@pytest.mark.timeout(30)
def test_references_resolve(overlay: Rendered) -> None:
    """HPAs, service accounts, config maps, secrets and claims named by workloads exist."""
    names = {(d["kind"], d["metadata"]["name"]) for d in overlay.docs}
    for hpa in overlay.of_kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) in names, hpa["metadata"]["name"]
    assert {
        h["spec"]["scaleTargetRef"]["name"] for h in overlay.of_kind("HorizontalPodAutoscaler")
    } == set(WORKLOADS)
    for d in overlay.workloads():
        spec = d["spec"]["template"]["spec"]
        assert ("ServiceAccount", spec["serviceAccountName"]) in names
        for volume in spec["volumes"]:
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in names
            if "secret" in volume and overlay.name == "dev":
                # prod's token Secret is made out of band (docs/deploy.md).
                assert ("Secret", volume["secret"]["secretName"]) in names
        mounted = {v["name"] for v in spec["volumes"]}
        for container in pod_containers(d):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in mounted, (d["metadata"]["name"], mount)


@pytest.mark.timeout(30)
def test_probe_and_service_ports_exist_in_containers(overlay: Rendered) -> None:
    """Every probe and Service targetPort names a port that its container declares."""
    for d in overlay.workloads():
        for container in pod_containers(d):
            ports = container.get("ports", [])
            known = {p["name"] for p in ports} | {p["containerPort"] for p in ports}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(kind)
                if probe is None:
                    continue
                handler = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc")
                assert handler is not None, (d["metadata"]["name"], container["name"], kind)
                assert handler["port"] in known, (d["metadata"]["name"], container["name"], kind)
    for service in overlay.of_kind("Service"):
        deployment = overlay.get("Deployment", service["metadata"]["name"])
        declared = {
            p["name"]: p["containerPort"]
            for c in pod_containers(deployment)
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in declared, (service["metadata"]["name"], port)
            assert port["port"] == declared[port["targetPort"]], "same port number inside and out"
    for backend in overlay.of_kind("BackendConfig"):
        endpoint = overlay.get("Deployment", "endpoint")
        ports = {p["containerPort"] for c in pod_containers(endpoint) for p in c["ports"]}
        assert backend["spec"]["healthCheck"]["port"] in ports


@pytest.mark.timeout(30)
def test_every_workload_has_probes_and_a_hardened_security_context(overlay: Rendered) -> None:
    """Each container has startup, readiness and liveness probes and the restricted context."""
    for d in overlay.workloads():
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod_containers(d):
            where = (d["metadata"]["name"], container["name"])
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["capabilities"] == {"drop": ["ALL"]}, where
            assert {"requests", "limits"} <= set(container["resources"]), where
            assert "startupProbe" in container, where
            assert "livenessProbe" in container, where
        main = pod["containers"][0]
        assert main["readinessProbe"]["httpGet"]["path"] == "/readiness"
        assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.timeout(30)
def test_grace_period_outlasts_prestop_and_drain(overlay: Rendered) -> None:
    """terminationGracePeriodSeconds exceeds the preStop pause plus the drain deadline."""
    for d in overlay.workloads():
        pod = d["spec"]["template"]["spec"]
        main = pod["containers"][0]
        pause = main["lifecycle"]["preStop"]["sleep"]["seconds"]
        drain = next(float(e["value"]) for e in main["env"] if e["name"].endswith("_DRAIN_SECONDS"))
        assert pod["terminationGracePeriodSeconds"] > pause + drain, d["metadata"]["name"]


@pytest.mark.timeout(30)
def test_every_workload_has_an_hpa_and_a_pdb(overlay: Rendered) -> None:
    """Each tier has a HorizontalPodAutoscaler and a PodDisruptionBudget."""
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in overlay.of_kind("HorizontalPodAutoscaler")}
    pdbs = {p["metadata"]["name"] for p in overlay.of_kind("PodDisruptionBudget")}
    assert hpas == set(WORKLOADS)
    assert pdbs == set(WORKLOADS)
    for d in overlay.workloads():
        # The HPA owns the replica count; a fixed one would be reset by every apply.
        assert "replicas" not in d["spec"], d["metadata"]["name"]


@pytest.mark.timeout(30)
def test_network_policies_allow_only_the_session_path(overlay: Rendered) -> None:
    """NetworkPolicies deny by default and allow endpoint → router → intermediate only."""
    policies = {p["metadata"]["name"]: p["spec"] for p in overlay.of_kind("NetworkPolicy")}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    def ingress_from(target: str) -> set[str]:
        peers = set()
        for spec in policies.values():
            if spec["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") != target:
                continue
            for rule in spec.get("ingress", []):
                for peer in rule.get("from", [{"podSelector": {"matchLabels": {"*": "*"}}}]):
                    labels = peer.get("podSelector", {}).get("matchLabels", {})
                    if "namespaceSelector" not in peer:
                        peers.add(labels.get("app.kubernetes.io/name", "*"))
        return peers

    assert ingress_from("router") == {"endpoint"}
    assert ingress_from("intermediate") == {"router"}
    # The endpoint's peers: test_exposure.py.


@pytest.mark.timeout(30)
def test_prod_exposes_the_endpoint_through_ingress_and_backendconfig(prod: Rendered) -> None:
    """prod: Ingress → NEG Service with a BackendConfig that keeps WebSockets open and drains."""
    ingress = prod.get("Ingress", "endpoint")
    backends = {p["backend"]["service"]["name"] for p in ingress_paths(ingress)}
    assert backends == {"endpoint"}
    service = prod.get("Service", "endpoint")
    annotations = service["metadata"]["annotations"]
    assert json.loads(annotations["cloud.google.com/neg"]) == {"ingress": True}
    backend_name = json.loads(annotations["cloud.google.com/backend-config"])["default"]
    backend = prod.get("BackendConfig", backend_name)["spec"]
    assert backend["timeoutSec"] >= 3600
    assert backend["connectionDraining"]["drainingTimeoutSec"] > 0
    assert backend["healthCheck"]["requestPath"] == "/readiness"


@pytest.mark.timeout(30)
def test_prod_mounts_versioned_models_read_only(prod: Rendered) -> None:
    """prod: engines read one model version from a ReadOnlyMany claim, logs go to an emptyDir."""
    claim = prod.get("PersistentVolumeClaim", "engine-models")
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    for name in ("intermediate-ja", "intermediate-en"):
        pod = prod.get("Deployment", name)["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["models"]["persistentVolumeClaim"]["readOnly"] is True
        assert "emptyDir" in volumes["engine-scratch"]
        engine = pod["initContainers"][0]
        assert engine["restartPolicy"] == "Always", "a native sidecar"
        models = [m for m in engine["volumeMounts"] if m["name"] == "models"]
        assert len(models) == 1
        assert models[0]["readOnly"] is True
        # NAME/VERSION on the model root (the layout of `kikimimi-models publish`).
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", models[0]["subPath"]), models[0]
        assert any(m["name"] == "engine-scratch" for m in engine["volumeMounts"])
        # The intermediate itself never sees the models.
        assert all(m["name"] != "models" for m in pod["containers"][0]["volumeMounts"])


@pytest.mark.timeout(30)
def test_endpoint_takes_tokens_from_a_secret(overlay: Rendered) -> None:
    """The endpoint verifies tokens from a Secret-backed hash file (auth is never off)."""
    endpoint = overlay.get("Deployment", "endpoint")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in endpoint["containers"][0]["env"]}
    assert env["ENDPOINT_AUTH"] == "tokens"
    mount = next(m for m in endpoint["containers"][0]["volumeMounts"] if m["name"] == "tokens")
    assert env["ENDPOINT_TOKEN_FILE"].startswith(mount["mountPath"] + "/")
    volume = next(v for v in endpoint["volumes"] if v["name"] == "tokens")
    assert volume["secret"]["secretName"].startswith("endpoint-tokens")


@pytest.mark.timeout(30)
def test_each_model_version_is_named_once_in_the_overlay(prod: Rendered) -> None:
    """An engine's model version is written in one line of k8s/ (its line in the overlay's
    model-versions.yaml), so moving to a new model is a one-line reviewed diff."""
    sources = list((ROOT / "k8s").rglob("*.yaml"))
    mounted: dict[str, int] = {}
    for name in ("intermediate-ja", "intermediate-en"):
        engine = prod.get("Deployment", name)["spec"]["template"]["spec"]["initContainers"][0]
        (mount,) = [m for m in engine["volumeMounts"] if m["name"] == "models"]
        mounted[mount["subPath"]] = mounted.get(mount["subPath"], 0) + 1
    for version, engines in mounted.items():
        lines = [
            f"{path.relative_to(ROOT)}: {line.strip()}"
            for path in sources
            for line in path.read_text().splitlines()
            if version in line and not line.lstrip().startswith("#")
        ]
        assert len(lines) == engines, lines
        assert all(line.startswith("k8s/overlays/prod/model-versions.yaml: ") for line in lines)
    assert "MODEL-VERSION-SET-BY-THE-OVERLAY" not in prod.text


@pytest.mark.timeout(10)
def test_every_component_has_a_readme() -> None:
    """Each kustomize component says what it adds and why, in its own README.md."""
    components = [p for p in (ROOT / "k8s/components").iterdir() if p.is_dir()]
    assert components
    missing = [p.name for p in components if not (p / "README.md").is_file()]
    assert not missing, missing
