"""Bad input gets one line saying what was wrong and what to do, and a non-zero exit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster
from titan_runtime import InvalidJob, JobNotFound, TitanClient, TitanConnectionError, TitanJob

pytestmark = pytest.mark.integration


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("titan-runtime: error: ")
    return lines[0]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "titan_runtime", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_missing_script(cluster: ProcessCluster) -> None:
    line = one_line_error(cluster.cli("submit", "nope.py"))
    assert "script nope.py does not exist" in line and "submit -- nope.py" in line
    with pytest.raises(InvalidJob, match="does not exist"):
        cluster.client.submit_job(TitanJob(filename=str(cluster.root / "nope.py")))


def test_empty_command(cluster: ProcessCluster) -> None:
    assert "empty command" in one_line_error(cluster.cli("submit", "--", ""))
    assert "nothing to run" in one_line_error(cluster.cli("submit"))
    with pytest.raises(InvalidJob, match="the command is empty"):
        cluster.client.submit_job(TitanJob(command=[]))


def test_unknown_job_id(cluster: ProcessCluster) -> None:
    line = one_line_error(cluster.cli("status", "nope"))
    assert "no job 'nope'" in line
    with pytest.raises(JobNotFound):
        cluster.client.get_job("nope")
    assert "no run 'r-unknown'" in one_line_error(cluster.cli("logs", "r-unknown/x"))


def test_invalid_tag(cluster: ProcessCluster) -> None:
    line = one_line_error(cluster.cli("submit", "--tag", "bad tag", "--", "true"))
    assert "invalid tag 'bad tag'" in line
    with pytest.raises(InvalidJob, match="invalid tag"):
        cluster.client.submit_job(TitanJob(command=["true"], tags=["no spaces allowed"]))
    line = one_line_error(run("worker", "--master", cluster.address, "--tags", "a b", "--token", "x"))
    assert "invalid tag 'a b'" in line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_master_names_the_address(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, TITAN_TOKEN="t")
    line = one_line_error(run("status", "x", "--address", f"127.0.0.1:{port}", env=env))
    assert f"cannot reach the Titan master at 127.0.0.1:{port}" in line
    with pytest.raises(TitanConnectionError, match=f"127.0.0.1:{port}"):
        TitanClient(address=f"127.0.0.1:{port}", token="t").list_workers()
    assert "invalid address" in one_line_error(run("status", "x", "--address", "nonsense", env=env))


def test_port_already_in_use(cluster: ProcessCluster, tmp_path: Path) -> None:
    line = one_line_error(run("master", "--port", str(cluster.port), "--data-dir", str(tmp_path / "other")))
    assert f"cannot listen on 127.0.0.1:{cluster.port}: the port is already in use" in line


def test_data_dir_that_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_line_error(run("master", "--port", "0", "--data-dir", str(blocker / "sub")))
    assert f"the data dir {blocker / 'sub'} cannot be written" in line


def test_missing_token(cluster: ProcessCluster, tmp_path: Path) -> None:
    env = dict(os.environ, TITAN_ADDRESS=cluster.address, TITAN_DATA_DIR=str(tmp_path / "empty"))
    env.pop("TITAN_TOKEN", None)
    line = one_line_error(run("workers", env=env))
    assert "missing token" in line and str(cluster.data_dir / "token") in line


def test_bad_option_value_is_one_line(cluster: ProcessCluster) -> None:
    line = one_line_error(cluster.cli("submit", "--priority", "high", "--", "true"))
    assert "'high' is not a valid integer" in line and "--help" in line


def test_unknown_event_loop(tmp_path: Path) -> None:
    env = dict(os.environ, TITAN_EVENT_LOOP="tokio")
    line = one_line_error(run("master", "--port", "0", "--data-dir", str(tmp_path), env=env))
    assert "TITAN_EVENT_LOOP='tokio' is not one of uvloop, asyncio" in line
