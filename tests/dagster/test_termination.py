"""Terminating a Dagster run stops the remote step processes: SIGTERM to the whole process group."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from tests.dagster import jobs
from tests.dagster.conftest import expected_preload, preloaded_for, run_config, warm_and_cold
from tests.dagster.runs import create_run, start_run_worker
from tests.helpers import ProcessCluster, pid_alive, wait_until
from titan_dagster import naming

pytestmark = pytest.mark.integration


@warm_and_cold
def test_terminating_the_run_worker_kills_the_step_and_its_children_on_the_worker(
    titan: ProcessCluster, instance: DagsterInstance, tmp_path: Path, warm: bool
) -> None:
    pid_file = tmp_path / "sleeper.pids"
    config = run_config(titan, warm=warm, ops={"sleeper": {"config": {"pid_file": str(pid_file)}}})
    run = create_run(instance, jobs.sleeper_job, config)
    worker = start_run_worker(instance, run, tmp_path / "run-worker.log")
    try:
        wait_until(pid_file.exists, timeout=60, interval=0.1, what="the sleeper step to start on Titan")
        step_pid, child_pid = (int(p) for p in pid_file.read_text().split())
        ref = f"{naming.step_run_id(run.run_id, 'sleeper', 0)}/{naming.STEP_JOB_ID}"
        record = titan.client.get_job(ref)
        assert record.state == "RUNNING" and record.attempts[-1].pid == step_pid
        assert pid_alive(step_pid) and pid_alive(child_pid)
        assert preloaded_for(step_pid) == expected_preload(warm)

        # What Dagster's run termination does: mark the run CANCELING, interrupt its run worker.
        instance.report_run_canceling(run)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(90) is not None
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    # The run worker returned only after the step's processes were gone, grandchild included.
    assert not pid_alive(step_pid)
    assert not pid_alive(child_pid)
    record = titan.client.get_job(ref)
    assert record.state == "CANCELLED", record
    finished = instance.get_run_by_id(run.run_id)
    assert finished is not None and finished.status == DagsterRunStatus.CANCELED
    messages = [r.message for r in instance.all_logs(run.run_id)]
    assert any(f"Cancelled Titan job {ref}" in m for m in messages), messages


def test_terminating_a_run_cancels_the_pipes_job_its_step_started(
    titan: ProcessCluster, instance: DagsterInstance, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pipes.pid"
    config = run_config(titan, ops={"pipes_sleeper": {"config": {"pid_file": str(pid_file)}}})
    run = create_run(instance, jobs.pipes_sleeper_job, config)
    worker = start_run_worker(instance, run, tmp_path / "run-worker.log")
    try:
        wait_until(pid_file.exists, timeout=60, interval=0.1, what="the Pipes job to start")
        pipes_pid = int(pid_file.read_text())
        [pipes_run] = [
            r
            for r in titan.client.list_runs(agent_run_id=naming.group_id(run.run_id))
            if r.labels[naming.LABEL_KIND] == "pipes"
        ]
        assert pid_alive(pipes_pid)
        instance.report_run_canceling(run)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(90) is not None
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert not pid_alive(pipes_pid)
    assert titan.client.get_run(pipes_run.id).state == "CANCELLED"
    # The executor cancelled it (the step's own credential may not touch another Titan run).
    messages = [r.message for r in instance.all_logs(run.run_id)]
    assert any("Cancelled Titan job" in m and pipes_run.id in m for m in messages), messages
    finished = instance.get_run_by_id(run.run_id)
    assert finished is not None and finished.status == DagsterRunStatus.CANCELED
