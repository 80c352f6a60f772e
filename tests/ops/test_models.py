"""kikimimi-models on a temporary model root: real files, real processes, real kustomize."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.ops import modelstore
from services.ops.modelstore import MANIFEST, STAGING, publish
from tests.ops.conftest import MODELS, ROOT, FakeKube, models


def make_model(path: Path, seed: str, files: int = 3, big: int = 0) -> Path:
    (path / "conf").mkdir(parents=True)
    for i in range(files):
        (path / "conf" / f"part-{i:04d}.txt").write_text(f"{seed} {i}\n")
    (path / "final.mdl").write_bytes(seed.encode() * 1000 + os.urandom(big))
    return path


def published_versions(root: Path, name: str) -> list[str]:
    return sorted(p.name for p in (root / name).iterdir()) if (root / name).exists() else []


def staging_entries(root: Path) -> list[str]:
    return sorted(p.name for p in (root / STAGING).iterdir()) if (root / STAGING).exists() else []


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.mark.timeout(60)
def test_publish_twice_gives_one_read_only_verified_version(root: Path, tmp_path: Path) -> None:
    src = make_model(tmp_path / "whisper-base-905e5bf8336b", "whisper-base")
    first = models(root, "publish", str(src), "--name", "whisper-base")
    assert first.returncode == 0, first.stderr
    [version] = published_versions(root, "whisper-base")
    assert (
        first.stdout == f"published whisper-base/{version} at {root / 'whisper-base' / version}\n"
    )
    again = models(root, "publish", str(src), "--name", "whisper-base")
    assert again.returncode == 0, again.stderr
    assert (
        again.stdout
        == f"already published: whisper-base/{version} has this content; nothing was copied\n"
    )
    assert published_versions(root, "whisper-base") == [version]

    tree = root / "whisper-base" / version
    for path in [tree, *tree.rglob("*")]:
        assert not path.stat().st_mode & 0o222, f"{path} is writable"
    assert (tree / "final.mdl").read_bytes() == (src / "final.mdl").read_bytes()
    check = subprocess.run(
        ["sha256sum", "--check", "--strict", MANIFEST], cwd=tree, capture_output=True, timeout=30
    )
    assert check.returncode == 0, check.stdout
    verified = models(root, "verify", f"whisper-base/{version}")
    assert verified.returncode == 0
    assert verified.stdout.startswith(f"ok  whisper-base/{version} (4 files,")

    (src / "conf" / "part-0001.txt").write_text("changed\n")
    changed = models(root, "publish", str(src), "--name", "whisper-base")
    assert changed.returncode == 0, changed.stderr
    assert len(published_versions(root, "whisper-base")) == 2


@pytest.mark.timeout(60)
def test_verify_finds_a_changed_file(root: Path, tmp_path: Path) -> None:
    result = publish(root, make_model(tmp_path / "m", "en"), "en")
    victim = result.path / "conf" / "part-0000.txt"
    victim.chmod(0o644)
    victim.write_text("tampered\n")
    verified = models(root, "verify", "en")
    assert verified.returncode == 1
    assert f"BAD en/{result.version}: conf/part-0000.txt: content differs" in verified.stdout
    assert f"BAD en/{result.version}: conf/part-0000.txt: writable" in verified.stdout


@pytest.mark.timeout(120)
def test_concurrent_publishes_give_one_version(root: Path, tmp_path: Path) -> None:
    src = make_model(tmp_path / "m", "ja", files=300, big=8 << 20)
    argv = [*MODELS, "--root", str(root), "publish", str(src), "--name", "whisper-base"]
    procs = [
        subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=100) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    [version] = published_versions(root, "whisper-base")
    said = sorted(out.split(":")[0].split(" ")[0] for out, _ in outputs)
    assert said == ["already", "published"], outputs
    assert staging_entries(root) == []
    assert models(root, "verify").returncode == 0
    assert version in outputs[0][0]
    assert version in outputs[1][0]


@pytest.mark.timeout(60)
def test_a_file_vanishing_mid_copy_leaves_nothing(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_model(tmp_path / "m", "ja", files=5)
    real_hash = modelstore._hash_file
    vanishing = src / "conf" / "part-0003.txt"

    def copy_then_delete_a_later_file(path: Path, copy_to: Path | None = None) -> str:
        if copy_to is not None and path.name == "part-0001.txt":
            vanishing.unlink()  # after the hashing pass, while the copy runs
        return real_hash(path, copy_to)

    monkeypatch.setattr(modelstore, "_hash_file", copy_then_delete_a_later_file)
    with pytest.raises(FileNotFoundError, match=r"part-0003\.txt"):
        publish(root, src, "whisper-base")
    assert published_versions(root, "whisper-base") == []
    assert staging_entries(root) == []


@pytest.mark.timeout(60)
def test_a_write_error_mid_copy_leaves_nothing(root: Path, tmp_path: Path) -> None:
    """A file size limit makes the kernel fail a write halfway through (like a full disk)."""
    src = make_model(tmp_path / "m", "ja", big=4 << 20)

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    result = subprocess.run(
        [*MODELS, "--root", str(root), "publish", str(src), "--name", "whisper-base"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit_file_size,
        check=False,
    )
    assert result.returncode == 1
    assert "File too large" in result.stderr
    assert published_versions(root, "whisper-base") == []
    assert staging_entries(root) == []


@pytest.mark.timeout(60)
def test_a_killed_publish_leaves_nothing_under_the_name_and_gc_clears_it(
    root: Path, tmp_path: Path
) -> None:
    src = make_model(tmp_path / "m", "ja", files=3000)
    proc = subprocess.Popen(
        [*MODELS, "--root", str(root), "publish", "-v", str(src), "--name", "whisper-base"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    # Unread, its progress fills the pipe and blocks it mid-copy (3000 lines > 64 KiB).
    assert proc.stdout.readline().startswith(b"copying ")
    deadline = time.monotonic() + 30
    while len(list((root / STAGING).rglob("part-*"))) < 100:
        assert time.monotonic() < deadline
        assert proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    assert published_versions(root, "whisper-base") == []
    leftovers = staging_entries(root)
    assert len(leftovers) == 2  # the copy and its lock

    fresh = models(root, "gc", "--keep", "1", "--yes", "--overlay", "k8s/overlays/dev")
    assert fresh.returncode == 0, fresh.stderr
    assert staging_entries(root) == leftovers  # under a minute old: maybe still running
    (root / STAGING / "whisper-base.0ddba11.lock").touch()  # a publisher that died cleaning up
    leftovers = staging_entries(root)
    an_hour_ago = time.time() - 3600
    for name in leftovers:
        os.utime(root / STAGING / name, (an_hour_ago, an_hour_ago))
    dry = models(root, "gc", "--keep", "1", "--overlay", "k8s/overlays/dev")
    assert "(left by a failed publish)" in dry.stdout
    assert staging_entries(root) == leftovers
    cleared = models(root, "gc", "--keep", "1", "--yes", "--overlay", "k8s/overlays/dev")
    assert cleared.returncode == 0, cleared.stderr
    assert staging_entries(root) == []
    assert models(root, "publish", str(src), "--name", "whisper-base").returncode == 0


def write_overlay(path: Path, sub_path: str) -> Path:
    """A kustomization whose one Deployment mounts a model version, as k8s/ does."""
    path.mkdir()
    (path / "kustomization.yaml").write_text("resources: [deployment.yaml]\n")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "intermediate-ja"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {
                    "containers": [
                        {
                            "name": "engine",
                            "image": "engine",
                            "volumeMounts": [
                                {
                                    "name": "models",
                                    "mountPath": "/models/current",
                                    "subPath": sub_path,
                                    "readOnly": True,
                                }
                            ],
                        }
                    ],
                    "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "m"}}],
                },
            },
        },
    }
    (path / "deployment.yaml").write_text(json.dumps(deployment))
    return path


@pytest.mark.timeout(120)
def test_gc_spares_the_newest_and_whatever_is_referenced(
    root: Path, tmp_path: Path, fake_kube: FakeKube
) -> None:
    refs = []
    for age, seed in enumerate(["newest", "newer", "in-overlay", "in-pods", "old", "oldest"]):
        version = publish(root, make_model(tmp_path / seed, seed), "whisper-base")
        manifest = version.path / MANIFEST
        when = time.time() - 3600 * (age + 1)
        os.utime(manifest, (when, when))
        refs.append(f"whisper-base/{version.version}")
    newest, newer, in_overlay, in_pods, old, oldest = refs
    overlay = write_overlay(tmp_path / "overlay", in_overlay)
    pods = tmp_path / "pods.json"
    pods.write_text(
        json.dumps(
            {
                "items": [
                    {
                        "spec": {
                            "volumes": [],
                            "containers": [{"volumeMounts": [{"subPath": in_pods}]}],
                        }
                    }
                ]
            }
        )
    )
    fake_kube.env["FAKE_KUBECTL_STDOUT"] = str(pods)
    where = ["--overlay", str(overlay), "--pods", "dev"]

    listed = models(root, "list", "--json", *where, env=fake_kube.env)
    assert listed.returncode == 0, listed.stderr
    by_ref = {f"{r['name']}/{r['version']}": r["referenced_by"] for r in json.loads(listed.stdout)}
    assert by_ref == {
        newest: [],
        newer: [],
        in_overlay: [f"overlay {overlay}"],
        in_pods: ["cluster dev"],
        old: [],
        oldest: [],
    }
    assert fake_kube.calls()[0] == [
        "--context",
        "kind-dev",
        "--namespace",
        "kikimimi-dev",
        "get",
        "pods,replicasets",
        "-o",
        "json",
    ]

    dry = models(root, "gc", "--keep", "2", *where, env=fake_kube.env)
    assert dry.returncode == 0, dry.stderr
    assert f"would delete {old} " in dry.stdout
    assert f"would delete {oldest} " in dry.stdout
    assert f"keep    {in_overlay}: referenced by overlay {overlay}" in dry.stdout
    assert f"keep    {in_pods}: referenced by cluster dev" in dry.stdout
    assert f"keep    {newer}: among the newest 2" in dry.stdout
    assert len(published_versions(root, "whisper-base")) == 6

    done = models(root, "gc", "--keep", "2", "--yes", *where, env=fake_kube.env)
    assert done.returncode == 0, done.stderr
    remaining = {f"whisper-base/{v}" for v in published_versions(root, "whisper-base")}
    assert remaining == {newest, newer, in_overlay, in_pods}
    assert staging_entries(root) == []
    assert models(root, "verify").returncode == 0


@pytest.mark.timeout(60)
def test_gc_deletes_nothing_when_it_cannot_know_what_is_in_use(root: Path, tmp_path: Path) -> None:
    for seed in ("a", "b", "c"):
        publish(root, make_model(tmp_path / seed, seed), "whisper-base")
    blind = models(root, "gc", "--keep", "1", "--yes", "--no-default-overlays")
    assert blind.returncode == 2
    assert "gc must know which versions are in use" in blind.stderr
    broken = models(root, "gc", "--keep", "1", "--yes", "--overlay", str(tmp_path / "nowhere"))
    assert broken.returncode == 1
    assert "kubectl kustomize" in broken.stderr
    assert "failed" in broken.stderr
    assert len(published_versions(root, "whisper-base")) == 3


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("setup", "args", "why"),
    [
        (lambda src: None, ["--name", "Ja Model"], "model name 'Ja Model'"),
        (
            lambda src: (src / "link").symlink_to("/etc/passwd"),
            ["--name", "whisper-base"],
            "symbolic link",
        ),
        (lambda src: os.mkfifo(src / "pipe"), ["--name", "whisper-base"], "not a regular file"),
        (
            lambda src: (src / MANIFEST).write_text("x"),
            ["--name", "whisper-base"],
            "name of the manifest",
        ),
    ],
)
def test_bad_publishes_are_refused(
    root: Path, tmp_path: Path, setup: Callable[[Path], object], args: list[str], why: str
) -> None:
    src = make_model(tmp_path / "m", "whisper-base")
    setup(src)
    result = models(root, "publish", str(src), *args)
    assert result.returncode in (1, 2)
    assert why in result.stderr
    assert not (root / "whisper-base").exists() or published_versions(root, "whisper-base") == []


@pytest.mark.timeout(30)
def test_no_root_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KIKIMIMI_MODEL_ROOT"}
    result = models(None, "list", env=env, timeout=30)
    assert result.returncode == 2
    assert "no model root: give --root DIR or set KIKIMIMI_MODEL_ROOT" in result.stderr
