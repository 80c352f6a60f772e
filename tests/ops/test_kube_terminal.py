"""The production prompt, through a real pseudo-terminal (pexpect)."""

from __future__ import annotations

import pexpect
import pytest

from tests.ops.conftest import KUBE, ROOT, FakeKube

PROD_PIN = ["--context", "gke_p_asia-northeast1_prod", "--namespace", "kikimimi"]
EXEC = ["exec", "--stdin", "--tty", "shell-demo", "--", "/bin/bash"]


def spawn(fake_kube: FakeKube, *args: str) -> pexpect.spawn:
    return pexpect.spawn(
        KUBE[0],
        [*KUBE[1:], *args],
        env=fake_kube.env,
        cwd=str(ROOT),
        timeout=15,
        encoding="utf-8",
    )


@pytest.mark.timeout(60)
def test_typing_the_name_runs_the_pinned_command(fake_kube: FakeKube) -> None:
    """The issue's case: exec with `--` on prod runs with the pin before the subcommand."""
    child = spawn(fake_kube, "prod", *EXEC)
    child.expect("PRODUCTION: prod")
    child.expect("gke_p_asia-northeast1_prod")
    child.expect("command    kubectl exec --stdin --tty shell-demo -- /bin/bash")
    child.expect(r"Type the environment's name \(prod\) to go on: ")
    assert fake_kube.calls() == []
    child.sendline("prod")
    child.expect("fake kubectl ran")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert fake_kube.calls() == [
        ["--context", "gke_p_asia-northeast1_prod", "--namespace", "kikimimi", *EXEC]
    ]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("answer", ["", "dev", "yes", "PROD", "prod please"])
def test_any_other_answer_runs_nothing(fake_kube: FakeKube, answer: str) -> None:
    child = spawn(fake_kube, "prod", "delete", "-k", "k8s/overlays/prod")
    child.expect("to go on: ")
    child.sendline(answer)
    child.expect("not confirmed; nothing was run")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert fake_kube.calls() == []


@pytest.mark.timeout(60)
def test_end_of_input_at_the_prompt_runs_nothing(fake_kube: FakeKube) -> None:
    child = spawn(fake_kube, "prod", "apply", "-k", "k8s/overlays/prod")
    child.expect("to go on: ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert fake_kube.calls() == []


@pytest.mark.timeout(60)
def test_no_prompt_for_reads_or_outside_production(fake_kube: FakeKube) -> None:
    for args in (["prod", "get", "pods"], ["dev", *EXEC]):
        child = spawn(fake_kube, *args)
        child.expect("fake kubectl ran")
        child.expect(pexpect.EOF)
        child.close()
        assert "PRODUCTION" not in (child.before or "")
        assert child.exitstatus == 0
    assert fake_kube.calls() == [
        [*PROD_PIN, "get", "pods"],
        ["--context", "kind-dev", "--namespace", "kikimimi-dev", *EXEC],
    ]


@pytest.mark.timeout(60)
def test_refusals_are_said_on_the_terminal_too(fake_kube: FakeKube) -> None:
    child = spawn(fake_kube, "prod", "config", "use-context", "dev")
    child.expect("refused: `config use-context` edits the kubeconfig")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    assert fake_kube.calls() == []
