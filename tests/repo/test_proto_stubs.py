"""The generated gRPC stubs are the ones `make proto` makes from the proto file now."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ROOT

PB = Path("services/common/pb")
GENERATED = [
    "recognizer_pb2.py",
    "recognizer_pb2.pyi",
    "recognizer_pb2_grpc.py",
    "recognizer_pb2_grpc.pyi",
]


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    """Regenerating from recognizer.proto gives byte-identical stubs (run `make proto`)."""
    (tmp_path / PB).mkdir(parents=True)
    shutil.copy(ROOT / PB / "recognizer.proto", tmp_path / PB / "recognizer.proto")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            "--python_out=.",
            "--grpc_python_out=.",
            "--mypy_out=.",
            "--mypy_grpc_out=.",
            str(PB / "recognizer.proto"),
        ],
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=60,
    )
    for name in GENERATED:
        fresh = (tmp_path / PB / name).read_text()
        committed = (ROOT / PB / name).read_text()
        assert fresh == committed, f"{PB / name} is stale: run `make proto`"
