"""The committed gRPC stubs must be exactly what `make proto` generates from titan.proto."""

from __future__ import annotations

import re
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


def test_stub_gencode_is_not_newer_than_the_oldest_protobuf_we_accept() -> None:
    """The stubs refuse to import on a protobuf runtime older than their gencode, so the floor in
    pyproject.toml must be at least the gencode version (dagster 1.12 needs protobuf 6 to install)."""
    pb2 = (ROOT / "titan_runtime" / "proto" / "titan_pb2.py").read_text()
    gencode = re.search(r"# Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", pb2)
    assert gencode, "titan_pb2.py has no '# Protobuf Python Version' line"
    pyproject = (ROOT / "pyproject.toml").read_text()
    floor = re.search(r'"protobuf>=(\d+)\.(\d+)(?:\.(\d+))?"', pyproject)
    assert floor, "pyproject.toml declares no protobuf>=X.Y[.Z] dependency"
    gen = tuple(int(g) for g in gencode.groups())
    low = tuple(int(g or 0) for g in floor.groups())
    assert gen <= low, f"stubs need protobuf>={'.'.join(map(str, gen))} but pyproject allows {low}"
