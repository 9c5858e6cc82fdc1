"""Every `titan-runtime` command, run as a subprocess against a real cluster."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster, pid_alive, wait_until

pytestmark = pytest.mark.integration


def test_submit_script_wait_returns_the_exit_code(cluster: ProcessCluster) -> None:
    (cluster.root / "exit3.py").write_text("import sys\nprint('bye')\nsys.exit(3)\n")
    out = cluster.cli("submit", "--wait", "exit3.py")
    assert out.returncode == 3, out.stderr
    job_id = out.stdout.strip()
    assert re.fullmatch(r"r-[0-9a-f]{10}", job_id)
    assert f"job {job_id}/exit3 FAILED: exit code 3" in out.stderr


def test_submit_follow_streams_output_and_passes_args(cluster: ProcessCluster) -> None:
    (cluster.root / "args.sh").write_text('echo "args: $*"\necho "to stderr" >&2\n')
    out = cluster.cli("submit", "--follow", "args.sh", "one", "two words")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "args: one two words\n"
    assert "to stderr" in out.stderr


def test_submit_command_with_env_tag_priority_timeout(make_cluster) -> None:
    c = make_cluster()
    c.add_worker("gpu", tags=["GPU"], slots=1)
    out = c.cli(
        "submit",
        "--tag",
        "GPU",
        "--priority",
        "5",
        "--env",
        "X=ü=1",
        "--follow",
        "--",
        "sh",
        "-c",
        'echo "$X $TITAN_WORKER_NAME"',
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ü=1 gpu\n"
    out = c.cli("submit", "--timeout", "0.5", "--wait", "--", "sleep", "30")
    assert out.returncode == 124
    assert "timed out after 0.5s" in out.stderr


def test_submit_script_args_that_look_like_options(cluster: ProcessCluster) -> None:
    (cluster.root / "opts.py").write_text("import sys\nprint(sys.argv[1:])\n")
    out = cluster.cli("submit", "--follow", "opts.py", "--verbose", "-x")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "['--verbose', '-x']\n"


def test_status_json_logs_result_and_runs(cluster: ProcessCluster) -> None:
    (cluster.root / "res.py").write_text(
        "from titan_runtime import task\nprint('hi')\ntask.set_result([1, 'ü'])\n"
    )
    job_id = cluster.cli("submit", "--wait", "res.py").stdout.strip()
    status = json.loads(cluster.cli("status", job_id, "--json").stdout)
    for key in ("id", "state", "worker_id", "attempt", "exit_code", "reason"):
        assert key in status
    assert (status["id"], status["state"], status["attempt"], status["exit_code"]) == (
        "res",
        "SUCCEEDED",
        1,
        0,
    )
    assert status["worker_id"].startswith("w1-")
    human = cluster.cli("status", f"{job_id}/res")
    assert "SUCCEEDED" in human.stdout and human.returncode == 0
    assert cluster.cli("logs", job_id).stdout == "hi\n"
    assert cluster.cli("logs", job_id, "-f").stdout == "hi\n"
    assert json.loads(cluster.cli("result", job_id).stdout) == [1, "ü"]
    runs = json.loads(cluster.cli("runs", "--json").stdout)
    assert [r["id"] for r in runs] == [job_id]
    assert "SUCCEEDED=1" in cluster.cli("runs").stdout


def test_cancel_stops_a_running_job(cluster: ProcessCluster) -> None:
    job_id = cluster.cli("submit", "--", "sleep", "300").stdout.strip()
    wait_until(lambda: cluster.client.get_job(job_id).state == "RUNNING", what="the job to start")
    pid = cluster.client.get_job(job_id).attempts[-1].pid
    out = cluster.cli("cancel", job_id)
    assert out.returncode == 0
    assert out.stdout.strip() == f"cancelled {job_id}/sleep"
    assert not pid_alive(pid)
    assert cluster.cli("cancel", job_id).stdout.strip() == f"{job_id}: nothing to cancel (already finished)"


def test_workers_lists_the_fields(cluster: ProcessCluster) -> None:
    workers = json.loads(cluster.cli("workers", "--json").stdout)
    assert len(workers) == 1
    w = workers[0]
    for key in (
        "id",
        "name",
        "host",
        "pid",
        "tags",
        "slots",
        "running",
        "cpu_percent",
        "memory_percent",
        "last_heartbeat",
    ):
        assert key in w
    assert (w["name"], w["slots"], w["running"], w["pid"]) == ("w1", 2, 0, cluster.workers["w1"].pid)
    assert "w1" in cluster.cli("workers").stdout


def test_kv_commands(cluster: ProcessCluster) -> None:
    assert cluster.cli("kv", "put", "clé", "valeur, avec virgule").returncode == 0
    assert cluster.cli("kv", "get", "clé").stdout == "valeur, avec virgule\n"
    assert cluster.cli("kv", "sadd", "s", "x,y").stdout == "1\n"
    assert cluster.cli("kv", "sadd", "s", "x,y").stdout == "0\n"
    assert cluster.cli("kv", "sadd", "s", "z").stdout == "1\n"
    assert cluster.cli("kv", "smembers", "s").stdout == "x,y\nz\n"
    assert cluster.cli("kv", "srem", "s", "z").stdout == "1\n"
    assert cluster.cli("kv", "incr", "n").stdout == "1\n"
    assert cluster.cli("kv", "incr", "n", "41").stdout == "42\n"
    assert cluster.cli("kv", "delete", "clé").stdout == "1\n"
    missing = cluster.cli("kv", "get", "clé")
    assert missing.returncode == 1 and "no value for key 'clé'" in missing.stderr
    bad = cluster.cli("kv", "incr", "s")
    assert bad.returncode == 0  # a set and a value of the same name are separate
    assert cluster.cli("kv", "put", "t", "abc").returncode == 0
    not_int = cluster.cli("kv", "incr", "t")
    assert not_int.returncode == 1 and "is not an integer" in not_int.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_up_starts_a_cluster_and_sigterm_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, TITAN_DATA_DIR=str(tmp_path / "data"), TITAN_ADDRESS=f"127.0.0.1:{port}")
    up = subprocess.Popen(
        [sys.executable, "-m", "titan_runtime", "up", "--port", str(port), "--workers", "2", "--slots", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = up.stdout.readline()
        assert f"master at 127.0.0.1:{port}, 2 local worker(s)" in first
        assert str(tmp_path / "data" / "token") in up.stdout.readline()
        token_file = tmp_path / "data" / "token"
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        done = subprocess.run(
            [sys.executable, "-m", "titan_runtime", "submit", "--follow", "--", "echo", "through up"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0 and done.stdout == "through up\n", done.stderr
        workers = json.loads(
            subprocess.run(
                [sys.executable, "-m", "titan_runtime", "workers", "--json"],
                capture_output=True,
                text=True,
                env=env,
            ).stdout
        )
        pids = [w["pid"] for w in workers]
        assert sorted(w["name"] for w in workers) == ["worker-1", "worker-2"]
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0
    for pid in pids:
        assert not pid_alive(pid)


def test_help_is_there_for_every_command() -> None:
    for args in ([], ["submit"], ["up"], ["worker"], ["kv"], ["logs"]):
        out = subprocess.run(
            [sys.executable, "-m", "titan_runtime", *args, "--help"], capture_output=True, text=True
        )
        assert out.returncode == 0
        assert "Usage: titan-runtime" in out.stdout
