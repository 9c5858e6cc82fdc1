"""Every example in example_pipelines/ runs against a real cluster, with its output asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "example_pipelines"


def run_yaml(cluster: ProcessCluster, path: Path) -> str:
    out = cluster.cli("run", "--wait", str(path), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip().splitlines()[0]


def run_sdk(cluster: ProcessCluster, script: Path) -> subprocess.CompletedProcess[str]:
    env = dict(cluster.env(), TITAN_TOKEN=cluster.token)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_diamond(cluster: ProcessCluster) -> None:
    run_id = run_yaml(cluster, EXAMPLES / "diamond" / "diamond.yaml")
    assert cluster.client.fetch_logs(f"{run_id}/sink") == "sink: left=20 right=30 total=50\n"
    run = cluster.client.get_run(run_id)
    jobs = {j.id: j for j in run.jobs}
    assert jobs["sink"].started_at >= max(jobs["left"].ended_at, jobs["right"].ended_at)


def test_fanout_of_four_and_reducer(cluster: ProcessCluster) -> None:
    run_id = run_yaml(cluster, EXAMPLES / "fanout" / "fanout.yaml")
    assert cluster.client.get_result(f"{run_id}/reducer") == 19
    log = cluster.client.fetch_logs(f"{run_id}/reducer")
    assert "worker_3: DATA_PART_3 had 5 words" in log and log.endswith("total words: 19\n")


def test_mapreduce_across_workers_with_separate_data_dirs(make_cluster) -> None:
    c = make_cluster()
    c.add_worker("left", slots=1)
    c.add_worker("right", slots=1)
    out = run_sdk(c, EXAMPLES / "mapreduce" / "mapreduce.py")
    assert "(twice the generated sum: True)" in out.stdout
    run_id = out.stdout.split()[2]
    jobs = {j.id: j for j in c.client.get_run(run_id).jobs}
    assert {jobs["map_0"].worker_name, jobs["map_1"].worker_name} == {"left", "right"}
    total = c.client.get_result(f"{run_id}/reduce")["total"]
    assert total == 2 * c.client.get_result(f"{run_id}/generate")["sum"]


def test_gpu_routing(make_cluster) -> None:
    c = make_cluster()
    c.add_worker("cpu-box", slots=2)
    c.add_worker("gpu-box", tags=["GPU"], slots=1)
    run_id = run_yaml(c, EXAMPLES / "gpu_routing" / "gpu.yaml")
    assert c.client.get_result(f"{run_id}/train") == {"trained_on": "gpu-box"}
    assert c.client.get_job(f"{run_id}/train").priority == 10


def test_etl_seven_jobs(cluster: ProcessCluster) -> None:
    out = run_sdk(cluster, EXAMPLES / "etl" / "etl.py")
    assert out.stdout.strip().endswith("report: 3 transforms of 10 rows, total amount 1650")
    run_id = out.stdout.split()[2]
    assert len(cluster.client.get_run(run_id).jobs) == 7


def test_kv_producer_consumer(cluster: ProcessCluster) -> None:
    run_id = run_yaml(cluster, EXAMPLES / "kv_handoff" / "kv.yaml")
    assert cluster.client.get_result(f"{run_id}/consumer") == {
        "value": "payload, with a comma — and ünïcode",
        "members": ["alpha", "beta,gamma"],
    }


def test_original_format_with_project_priority_delay_affinity_args(make_cluster) -> None:
    c = make_cluster()
    c.add_worker("w1", slots=2)
    c.add_worker("w2", slots=2)
    run_id = run_yaml(c, EXAMPLES / "original_format" / "pipeline.yaml")
    jobs = {j.id: j for j in c.client.get_run(run_id).jobs}
    assert all(j.state == "SUCCEEDED" for j in jobs.values())
    assert "source=demo limit=3" in c.client.fetch_logs(f"{run_id}/fetch")
    assert "[init] on" in c.client.fetch_logs(f"{run_id}/init")
    # delay counts from when fetch became ready (init's end), not from submission.
    assert jobs["fetch"].started_at - jobs["init"].ended_at >= 2.0
    assert jobs["fetch"].ready_at - jobs["init"].ended_at >= 2.0 - 0.05
    # affinity: process ran on the worker that ran fetch.
    assert jobs["process"].worker_id == jobs["fetch"].worker_id
    assert c.client.fetch_logs(f"{run_id}/publish") == "publish: squares [0, 1, 4]\n"
