"""Prometheus metrics and JSON logs on real processes: a master with --metrics-port 0 and a worker,
scraped over HTTP as Prometheus would; `up` passing both flags on to what it starts."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import PYTHON, ProcessCluster, wait_until
from titan_runtime import TitanClient, TitanJob
from titan_runtime.client.errors import JobNotFound, Unauthenticated

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(address: str) -> Samples:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample that must be there (a missing one is a renamed metric, not a zero)."""
    return samples[(name, frozenset(labels.items()))]


def counted(samples: Samples, name: str, **labels: str) -> float:
    """A labelled counter's value: 0 until its first increment makes the series."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def metrics_address(data_dir: Path) -> str:
    return json.loads((data_dir / "master.json").read_text())["metrics"]


def json_lines(text: str) -> list[dict[str, str]]:
    """Every line of a log, each of which must be one JSON object of the documented shape."""
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
    return entries


def listening_ip(pid: int, port: int) -> str:
    (found,) = [
        c.laddr.ip
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    return found


def test_metrics_move_as_jobs_run(make_cluster: Callable[..., ProcessCluster]) -> None:
    cluster = make_cluster(master_args=("--metrics-port", "0", "--log-format", "json"))
    address = metrics_address(cluster.data_dir)
    assert cluster.master is not None
    assert listening_ip(cluster.master.pid, int(address.rsplit(":", 1)[1])) == "127.0.0.1"
    cluster.add_worker("w1", slots=2, args=("--log-format", "json"))
    client = cluster.client

    start = scrape(address)
    assert value(start, "titan_workers", state="ALIVE") == 1
    assert value(start, "titan_worker_slots") == 2
    assert value(start, "titan_dispatch_latency_seconds_count") == 0

    run = client.submit_dag("m", [TitanJob("a", command=["echo", "hello"]), TitanJob("b", command=["true"])])
    assert run.wait(30).state == "SUCCEEDED"
    assert "hello" in client.fetch_logs(f"{run}/a")  # a server stream, counted when it ends
    sleeper = client.submit_job(TitanJob(command=["sleep", "60"]))
    unroutable = client.submit_job(TitanJob(command=["true"], tags=["GPU"]))

    def running() -> Samples | None:
        samples = scrape(address)
        return samples if value(samples, "titan_jobs", state="RUNNING") == 1 else None

    during = wait_until(running, 30, what="the sleeper to run")
    assert value(during, "titan_queue_depth", tags="GPU") == 1
    assert value(during, "titan_jobs", state="READY") == 1
    assert value(during, "titan_worker_slots_used") == 1

    with pytest.raises(JobNotFound):
        client.get_run("no-such-run")
    with (
        TitanClient(address=cluster.address, token="wrong", reconnect_timeout=0) as stranger,
        pytest.raises(Unauthenticated),
    ):
        stranger.list_workers()
    client.cancel(sleeper, wait=True)
    client.cancel(unroutable, wait=True)

    def settled() -> Samples | None:
        samples = scrape(address)
        idle = (
            value(samples, "titan_jobs", state="RUNNING") == 0
            and value(samples, "titan_queue_depth", tags="") == 0
        )
        return (
            samples
            if idle and counted(samples, "titan_rpcs_handled_total", method="ReadLogs", code="OK")
            else None
        )

    end = wait_until(settled, 30, what="the cancels to settle")
    assert value(end, "titan_dispatch_latency_seconds_count") == 3  # a, b and the sleeper
    assert value(end, "titan_dispatch_latency_seconds_sum") > 0
    assert value(end, "titan_store_commit_duration_seconds_count") > 0
    assert value(end, "titan_log_received_bytes_total") > len("hello\n")
    assert counted(end, "titan_attempts_ended_total", state="SUCCEEDED") == 2
    assert counted(end, "titan_attempts_ended_total", state="CANCELLED") == 1
    assert counted(end, "titan_rpcs_handled_total", method="SubmitRun", code="OK") == 3
    assert counted(end, "titan_rpcs_handled_total", method="GetRun", code="NOT_FOUND") == 1
    assert counted(end, "titan_rpcs_handled_total", method="ListWorkers", code="UNAUTHENTICATED") == 1
    assert value(end, "titan_workers", state="ALIVE") == 1
    assert value(end, "process_resident_memory_bytes") > 0
    assert [v for (name, _), v in end.items() if name == "titan_master_info"] == [1]

    master_log = json_lines(cluster.master_log())
    assert any("Prometheus metrics on http://" in e["message"] for e in master_log)
    assert any(e["logger"].startswith("titan.worker") for e in json_lines(cluster.worker_log("w1")))


@pytest.mark.parametrize("where", ["flag", "cluster file"])
def test_up_passes_metrics_and_log_format_to_what_it_starts(tmp_path: Path, where: str) -> None:
    data_dir = tmp_path / "data"
    argv = [PYTHON, "-m", "titan_runtime", "up", "--port", "0", "--workers", "1", "--data-dir", str(data_dir)]
    argv += ["--store", "memory", "--log-format", "json", "--no-dashboard"]
    if where == "flag":
        argv += ["--metrics-port", "0"]
    else:  # the file's master section, with a pool that starts no worker of its own
        cluster_file = tmp_path / "cluster.yaml"
        cluster_file.write_text(
            "master: {metrics_port: 0, metrics_bind: 127.0.0.1}\n"
            "pools: [{name: spare, provider: local, min: 0, max: 1}]\n"
        )
        argv += ["--cluster", str(cluster_file)]
    stderr = tmp_path / "up.err"
    with open(stderr, "wb") as err:
        up = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    try:
        assert up.stdout is not None
        banner = ""
        while "Try:" not in banner:  # printed once the workers have registered
            line = up.stdout.readline().decode()
            assert line, f"up exited:\n{stderr.read_text()}"
            banner += line
        address = metrics_address(data_dir)
        assert f"Metrics: http://{address}/metrics" in banner
        assert value(scrape(address), "titan_workers", state="ALIVE") == 1
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0
    entries = json_lines(stderr.read_text())
    assert any(e["logger"] == "titan.master" for e in entries)
    assert any("Stopping" in e["message"] for e in entries)
    assert json_lines((data_dir / "workers" / "worker-1.log").read_text())
