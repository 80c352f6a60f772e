"""kikimimi-kube against a fake kubectl: pinned flags, arguments unchanged, refusals."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ops.kubeargs import Refused, check_pin
from tests.ops.conftest import KUBE, ROOT, FakeKube

DEV_PIN = ["--context", "kind-dev", "--namespace", "kikimimi-dev"]
PROD_PIN = ["--context", "gke_p_asia-northeast1_prod", "--namespace", "kikimimi"]

# Real command shapes operators type, each passed through unchanged after the pin.
SHAPES = [
    "exec --stdin --tty shell-demo -- /bin/bash",
    "exec -it deploy/intermediate-ja -c intermediate -- python -c 'import sys; print(1)'",
    "exec shell-demo -- kubectl --context other -n elsewhere get pods",
    "logs -f deploy/router --since=10m",
    "logs -fp intermediate-ja-7d9c -c engine",
    "apply -k k8s/overlays/dev",
    "apply -f - --server-side",
    "diff -k k8s/overlays/dev",
    "delete -k k8s/overlays/dev --wait=false",
    "port-forward svc/endpoint 8080:8080",
    "cp intermediate-ja-7d9c:/var/cache/engine/log.txt ./log.txt -c engine",
    "run -it --rm debug --image=busybox --restart=Never -- sh",
    "debug -it intermediate-ja-7d9c --image=busybox --target=engine -- sh",
    "get pods -o json",
    "get pods -n kikimimi-dev -l app.kubernetes.io/name=router",
    "get pods --namespace=kikimimi-dev -w",
    "-v=6 get pods",
    "--request-timeout 5s get deploy",
    "rollout status deploy/intermediate-ja",
    "rollout restart deploy/router",
    "scale deploy/router --replicas=3",
    "auth can-i create pods",
    "top pods --containers",
    "events --for pod/router-1",
    "config view --minify",
    "exec router-1 -- sh -c 'echo -- --context x'",
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shape", SHAPES)
def test_shape_arrives_unchanged_after_the_pin(fake_kube: FakeKube, shape: str) -> None:
    import shlex

    args = shlex.split(shape)
    result = fake_kube.run("dev", *args)
    assert result.returncode == 0, result.stderr
    assert "fake kubectl ran" in result.stdout
    assert fake_kube.calls() == [DEV_PIN + args]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("argv", "read_only"),
    [
        ("rollout -n ns status deploy/x", True),
        ("rollout restart deploy/x", False),
        ("-v 6 config view", True),
        ("--request-timeout 5s auth can-i get pods", True),
        ("auth reconcile -f rbac.yaml", False),
        ("get pods", True),
        ("apply -k k8s/overlays/prod", False),
        ("certificate approve csr-1", False),
    ],
)
def test_which_commands_only_read(argv: str, read_only: bool) -> None:
    assert check_pin(argv.split(), "ns").read_only is read_only


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shape", ["krew list", "ns kube-system", "ctx", "neat get -- pod x"])
def test_plugins_run_on_a_kubeconfig_of_the_environment_alone(
    fake_kube: FakeKube, shape: str
) -> None:
    """kubectl refuses flags before a plugin's name: a plugin gets the pin as KUBECONFIG."""
    args = shape.split()
    result = fake_kube.run("dev", *args)
    assert result.returncode == 0, result.stderr
    view = ["config", "view", "--minify", "--flatten", "--context", "kind-dev", "-o", "json"]
    assert fake_kube.calls() == [view, args]
    [seen] = fake_kube.kubeconfigs()
    config = seen["config"]
    assert config["current-context"] == "kind-dev"
    assert config["contexts"] == [
        {
            "name": "kind-dev",
            "context": {"cluster": "kind-dev", "user": "kind-dev", "namespace": "kikimimi-dev"},
        }
    ]
    assert not Path(seen["path"]).exists(), "the private kubeconfig is removed afterwards"


@pytest.mark.timeout(60)
def test_sigterm_during_a_plugin_removes_its_kubeconfig(fake_kube: FakeKube) -> None:
    fake_kube.env["FAKE_KUBECTL_SLEEP"] = "30"
    proc = subprocess.Popen(
        [*KUBE, "dev", "krew", "list"], env=fake_kube.env, cwd=ROOT, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while not fake_kube.kubeconfigs():  # the plugin has started
        assert time.monotonic() < deadline
        assert proc.poll() is None
        time.sleep(0.05)
    proc.terminate()
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    [seen] = fake_kube.kubeconfigs()
    assert not Path(seen["path"]).parent.exists()


@pytest.mark.timeout(30)
def test_a_plugin_on_production_asks_and_gets_the_plugins_exit_status(
    fake_kube: FakeKube,
) -> None:
    refused = fake_kube.run("prod", "ns")
    assert refused.returncode == 2
    assert "without a terminal" in refused.stderr
    assert fake_kube.calls() == []
    fake_kube.env["FAKE_KUBECTL_EXIT"] = "3"
    result = fake_kube.run("--yes-i-mean", "prod", "prod", "krew", "list")
    assert result.returncode == 3
    assert fake_kube.calls()[-1] == ["krew", "list"]


@pytest.mark.timeout(30)
def test_kubectl_exit_status_passes_through(fake_kube: FakeKube) -> None:
    fake_kube.env["FAKE_KUBECTL_EXIT"] = "42"
    result = fake_kube.run("dev", "get", "pods")
    assert result.returncode == 42
    assert fake_kube.calls() == [[*DEV_PIN, "get", "pods"]]


@pytest.mark.timeout(30)
def test_kubectl_replaces_the_wrapper_process(fake_kube: FakeKube, tmp_path: Path) -> None:
    """exec, not a child: signals, the terminal and the exit status are kubectl's own."""
    pidfile = tmp_path / "kubectl.pid"
    fake_kube.env["FAKE_KUBECTL_PIDFILE"] = str(pidfile)
    proc = subprocess.Popen(
        [*KUBE, "dev", "get", "pods"], env=fake_kube.env, cwd=ROOT, stdout=subprocess.DEVNULL
    )
    assert proc.wait(timeout=20) == 0
    assert int(pidfile.read_text()) == proc.pid


@pytest.mark.timeout(30)
def test_production_read_only_commands_run_without_asking(fake_kube: FakeKube) -> None:
    result = fake_kube.run("prod", "logs", "-f", "deploy/router")
    assert result.returncode == 0, result.stderr
    assert fake_kube.calls() == [[*PROD_PIN, "logs", "-f", "deploy/router"]]


@pytest.mark.timeout(30)
def test_production_change_without_terminal_needs_the_flag_and_the_name(
    fake_kube: FakeKube,
) -> None:
    args = ["exec", "--stdin", "--tty", "shell-demo", "--", "/bin/bash"]
    refused = fake_kube.run("prod", *args)
    assert refused.returncode == 2
    assert "without a terminal" in refused.stderr
    assert "--yes-i-mean prod" in refused.stderr
    wrong = fake_kube.run("--yes-i-mean", "dev", "prod", *args)
    assert wrong.returncode == 2
    assert "does not name the environment 'prod'" in wrong.stderr
    assert fake_kube.calls() == []
    confirmed = fake_kube.run("--yes-i-mean", "prod", "prod", *args)
    assert confirmed.returncode == 0, confirmed.stderr
    assert fake_kube.calls() == [[*PROD_PIN, *args]]


REFUSALS = [
    ("get pods --context prod", "another kubeconfig context"),
    ("get pods --context=prod", "another kubeconfig context"),
    ("--kubeconfig /tmp/other get pods", "another kubeconfig"),
    ("get pods --cluster=other", "another cluster"),
    ("get pods --user admin", "another kubeconfig user"),
    ("get pods --server https://10.0.0.1", "another API server"),
    ("get pods -s https://10.0.0.1", "another API server"),
    ("get pods --as system:admin", "impersonation"),
    ("get pods --token abc", "credentials"),
    ("get pods -A", "every namespace"),
    ("delete pods --all --all-namespaces", "every namespace"),
    ("get pods -n kube-system", "namespace is 'kikimimi-dev'"),
    ("get pods -nkube-system", "namespace is 'kikimimi-dev'"),
    ("get pods -n=kube-system", "namespace is 'kikimimi-dev'"),
    ("get pods --namespace kube-system", "namespace is 'kikimimi-dev'"),
    ("get pods --namespace=kube-system", "namespace is 'kikimimi-dev'"),
    ("exec -itn kube-system pod -- sh", "namespace is 'kikimimi-dev'"),
    ("logs -fn kube-system pod", "namespace is 'kikimimi-dev'"),
    ("-n kube-system get pods", "namespace is 'kikimimi-dev'"),
    ("get pods -wA", "every namespace"),
    ("exec -is https://10.0.0.1 pod -- sh", "another API server"),
    ("get pods -shttps://10.0.0.1", "another API server"),
    ("config use-context prod", "edits the kubeconfig"),
    ("config set-context --current --namespace=kube-system", "edits the kubeconfig"),
    ("config set clusters.x.server https://evil", "edits the kubeconfig"),
    ("config delete-context dev", "edits the kubeconfig"),
    ("--", "no kubectl command"),
    ("ns --kubeconfig /tmp/other", "another kubeconfig"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("shape", "why"), REFUSALS)
def test_escapes_from_the_pin_are_refused(fake_kube: FakeKube, shape: str, why: str) -> None:
    result = fake_kube.run("dev", *shape.split())
    assert result.returncode == 2
    assert result.stderr.startswith("kikimimi-kube: refused: "), result.stderr
    assert why in result.stderr
    assert fake_kube.calls() == []


@pytest.mark.timeout(30)
def test_environment_errors_name_the_file_and_line(fake_kube: FakeKube) -> None:
    fake_kube.environments.write_text(
        "dev:\n  context: kind-dev\n  namespace: Kikimimi_Dev\n  production: false\n"
        "prod:\n  context: x\n  namespace: kikimimi\n  production: yes please\n  colour: red\n"
    )
    result = fake_kube.run("dev", "get", "pods")
    assert result.returncode == 2
    path = fake_kube.environments
    assert f"{path}:3: dev.namespace: String should match pattern" in result.stderr
    assert f"{path}:8: prod.production: Input should be a valid boolean" in result.stderr
    assert f"{path}:9: prod.colour: Extra inputs are not permitted" in result.stderr
    assert fake_kube.calls() == []


@pytest.mark.timeout(30)
def test_unknown_environment_and_missing_file(fake_kube: FakeKube) -> None:
    unknown = fake_kube.run("staging", "get", "pods")
    assert unknown.returncode == 2
    assert "unknown environment 'staging'; known: dev, prod" in unknown.stderr
    missing = fake_kube.run("--environments", "/nonexistent/envs.yaml", "dev", "get", "pods")
    assert missing.returncode == 2
    assert "/nonexistent/envs.yaml: cannot read the environments file" in missing.stderr
    assert fake_kube.calls() == []


# Arguments that are neither escapes nor namespace flags nor plugin names, in any order.
_word = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=0, max_size=12
)
_safe_arg = _word.filter(
    lambda a: not a.startswith("-") or a == "--" or a.startswith(("--label", "--output"))
)


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    command=st.sampled_from(["get", "exec", "logs", "apply", "run", "cp", "describe"]),
    args=st.lists(st.one_of(_safe_arg, st.sampled_from(["-it", "-f", "-o", "json", "--"]))),
    after_dashdash=st.lists(_word),
)
def test_any_arguments_pass_the_pin_unchanged(
    command: str, args: list[str], after_dashdash: list[str]
) -> None:
    """Whatever follows the command reaches kubectl unchanged, right after the pinned flags."""
    from services.ops.environments import Environment
    from services.ops.kube import kubectl_argv

    argv = [command, *args, "--", *after_dashdash]
    environment = Environment(name="dev", context="kind-dev", namespace="ns", production=False)
    found = check_pin(argv, "ns")
    assert found.name == command
    pinned = kubectl_argv(environment, argv)
    assert pinned[:5] == ["kubectl", "--context", "kind-dev", "--namespace", "ns"]
    assert pinned[5:] == argv


@pytest.mark.timeout(60)
@settings(max_examples=200, deadline=None)
@given(
    before=st.lists(st.sampled_from(["pods", "-o", "json", "-it", "x"]), max_size=4),
    spelling=st.sampled_from(["-n {}", "-n{}", "-n={}", "--namespace {}", "--namespace={}"]),
    other=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True).filter(lambda n: n != "ns"),
)
def test_any_other_namespace_is_refused(before: list[str], spelling: str, other: str) -> None:
    argv = ["get", *before, *spelling.format(other).split(" ")]
    with pytest.raises(Refused, match="namespace is 'ns'"):
        check_pin(argv, "ns")


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=None)
@given(command=st.sampled_from(["exec", "run", "debug"]), after=st.lists(_word))
def test_nothing_after_dashdash_is_refused(command: str, after: list[str]) -> None:
    """After `--` every argument is the container's, even `--context x` or `-n other`."""
    assert check_pin([command, "pod", "--", *after], "ns").name == command


# Any argument, flags and escapes included: refused, or arrives unchanged.
_any_arg = st.one_of(
    _word,
    st.sampled_from(
        ["-it", "-n", "kikimimi-dev", "-nother", "--context", "x", "-A", "-f", "--", "-v=6"]
    ),
)


@pytest.mark.timeout(180)
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(args=st.lists(_any_arg, max_size=6), after_dashdash=st.lists(_word, max_size=4))
def test_any_arguments_reach_the_real_process_unchanged_or_are_refused(
    fake_kube: FakeKube, args: list[str], after_dashdash: list[str]
) -> None:
    """Through the console script's process and exec (argv as bytes, no shell): kubectl
    gets exactly the pin and the arguments, or is not run at all and the refusal says why."""
    fake_kube.log.unlink(missing_ok=True)
    argv = ["exec", "pod", *args, "--", *after_dashdash]
    result = fake_kube.run("dev", *argv)
    if result.returncode == 2:
        assert result.stderr.startswith("kikimimi-kube: refused: ")
        assert fake_kube.calls() == []
    else:
        assert result.returncode == 0, result.stderr
        assert fake_kube.calls() == [DEV_PIN + argv]
