"""TitanPipelineOperator: a whole Titan YAML pipeline as one Airflow task, with per-job progress."""

from __future__ import annotations

import re
import signal

import pytest

from tests.airflow.harness import task_log_lines
from tests.helpers import ProcessCluster, pid_alive, wait_until

pytestmark = pytest.mark.integration
PIPELINE_LOGGER = "TitanPipelineOperator"


def ended(lines: list[str], job: str, state: str) -> int:
    """Index of the line that logs `job` ending in `state`."""
    [index] = [i for i, m in enumerate(lines) if re.fullmatch(rf"job {job} {state}( \(.*\))?", m)]
    return index


def test_pipeline_runs_as_one_task_with_per_job_progress_and_output(cluster: ProcessCluster, run_dag) -> None:
    result = run_dag("titan_pipeline", cluster).wait()
    assert result.state == "success", result.log
    lines = task_log_lines(result.log, PIPELINE_LOGGER)
    jobs = ("root", "left", "right", "sink")
    for job in jobs:
        # Each job's whole output, prefixed with its id, then the line saying how it ended.
        output = [i for i, m in enumerate(lines) if m.startswith(f"[{job}] ")]
        assert [lines[i] for i in output] == [f"[{job}] {job} says {n}" for n in range(3)]
        assert max(output) < ended(lines, job, "SUCCEEDED")
    assert result.xcom["diamond"]["return_value"] == {j: f"{j} done" for j in jobs}
    run_id = result.xcom["diamond"]["titan_run_id"]
    assert run_id.startswith("af_titan_pipeline.diamond.") and run_id.endswith(".try1")
    run = cluster.client.get_run(run_id)
    assert run.state == "SUCCEEDED"
    assert run.labels["airflow.run_id"] == result.run_id
    assert all(len(job.attempts) == 1 for job in run.jobs)
    # Titan kept the diamond's order (the task log interleaves concurrent jobs freely).
    by_id = {job.id: job for job in run.jobs}
    assert by_id["root"].ended_at <= min(by_id["left"].started_at, by_id["right"].started_at)
    assert max(by_id["left"].ended_at, by_id["right"].ended_at) <= by_id["sink"].started_at


def test_pipeline_failure_names_the_failed_job_with_its_log_tail(cluster: ProcessCluster, run_dag) -> None:
    result = run_dag("titan_pipeline_failure", cluster).wait()
    assert result.state == "failed"
    log = result.log
    lines = task_log_lines(log, PIPELINE_LOGGER)
    assert ended(lines, "right", "FAILED") > lines.index("[right] [stderr] right is giving up")
    assert "exit code 5" in lines[ended(lines, "right", "FAILED")]
    ended(lines, "sink", "UPSTREAM_FAILED")
    assert "[right] [stderr] right is giving up" in lines
    message = log[log.index("TitanJobFailed: Titan run ") :]
    assert "FAILED (" in message.splitlines()[0]
    assert (
        "Titan job af_titan_pipeline_failure.broken." in message and "/right FAILED (exit code 5)" in message
    )
    tail = message[message.index("Last 2 line(s) of its output:") :].split("Whole output")[0]
    assert "right says 2" in tail and "[stderr] right is giving up" in tail and "right says 1" not in tail


def test_killing_the_task_cancels_every_job_of_the_run(cluster: ProcessCluster, run_dag) -> None:
    running = run_dag("titan_pipeline_kill", cluster)

    def pids() -> list[int] | None:
        values = [cluster.client.store_get(f"sleeper/{name}") for name in ("first", "second")]
        return [int(p) for v in values for p in v.split()] if all(values) else None

    sleeping = wait_until(pids, 120, what="both jobs to record their pids")
    running.wait_for_log("[second] second is sleeping")
    running.signal(signal.SIGTERM)
    result = running.wait()
    for pid in sleeping:
        assert not pid_alive(pid), f"remote process {pid} survived the kill"
    assert result.task_state("sleepers") == "failed"
    run = cluster.client.get_run(result.xcom["sleepers"]["titan_run_id"])
    assert run.state == "CANCELLED"
    assert {job.state for job in run.jobs} == {"CANCELLED"}
