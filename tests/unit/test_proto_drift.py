"""The committed gRPC stubs must be exactly what `make proto` generates from titan.proto."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO = "titan_runtime/proto/titan.proto"
GENERATED = ["titan_pb2.py", "titan_pb2_grpc.py", "titan_pb2.pyi"]


def test_generated_stubs_match_the_proto(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) generates the stubs")
    (tmp_path / "titan_runtime" / "proto").mkdir(parents=True)
    shutil.copy(ROOT / PROTO, tmp_path / PROTO)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            "--python_out=.",
            "--grpc_python_out=.",
            "--pyi_out=.",
            PROTO,
        ],
        cwd=tmp_path,
        check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "titan_runtime" / "proto" / name).read_text()
        committed = (ROOT / "titan_runtime" / "proto" / name).read_text()
        assert fresh == committed, f"{name} is stale: run `make proto` and commit the result"
