"""`titan-runtime up --cluster` and `master --cluster`: pools from a file, its errors before anything starts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import pid_alive, wait_until

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "titan_runtime", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_up_with_a_cluster_file_keeps_the_pool_at_its_min_and_stops_it(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "cluster.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            master: {{port: {port}, heartbeat_interval: 0.2}}
            autoscaler: {{interval: 0.1}}
            pools:
              - {{name: base, provider: local, tags: [base], slots: 1, min: 1, max: 2}}
            """
        )
    )
    env = dict(os.environ, TITAN_DATA_DIR=str(tmp_path / "data"), TITAN_ADDRESS=f"127.0.0.1:{port}")
    up = subprocess.Popen(
        [sys.executable, "-m", "titan_runtime", "up", "--cluster", str(config), "--no-dashboard"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert f"master at 127.0.0.1:{port}, 0 local worker(s)" in up.stdout.readline()
        assert "Autoscaled pools: base (local, 1-2)" in up.stdout.readline()
        assert "Token:" in up.stdout.readline()

        def pool_worker() -> dict | None:
            workers = json.loads(cli(env, "workers", "--json").stdout or "[]")
            return next((w for w in workers if w["pool"] == "base" and w["state"] == "ALIVE"), None)

        worker = wait_until(pool_worker, 30, what="the pool's min worker to register")
        assert worker["provider"] == "local" and worker["tags"] == ["base"]
        status = json.loads(cli(env, "autoscaler", "status", "--json").stdout)
        assert status["enabled"] and status["pools"][0]["workers"] == 1
        text = cli(env, "autoscaler", "status").stdout
        assert "base" in text and "1-2" in text
        events = json.loads(cli(env, "autoscaler", "events", "--json").stdout)
        assert [e["kind"] for e in events[:2]] == ["launch", "registered"]
        assert "below its min of 1" in events[0]["message"]
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0, up.stderr.read()
    assert not pid_alive(worker["pid"])  # the pool's worker stopped with it


def test_a_bad_cluster_file_stops_the_master_before_it_starts(tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text("pools:\n  - {name: cpu, provider: local, min: 4, max: 2}\n")
    env = dict(os.environ, TITAN_DATA_DIR=str(tmp_path / "data"))
    done = cli(env, "master", "--port", "0", "--cluster", str(config))
    assert done.returncode == 1
    assert f"{config} is not a valid cluster file" in done.stderr
    assert "pools[0] (cpu).min: 4 is more than max (2)" in done.stderr
    assert not (tmp_path / "data" / "master.json").exists()


def test_autoscaler_commands_without_a_cluster_file(make_cluster) -> None:
    cluster = make_cluster()
    done = cluster.cli("autoscaler", "status")
    assert done.returncode == 0 and "No autoscaling" in done.stdout
    assert json.loads(cluster.cli("autoscaler", "events", "--json").stdout) == []
