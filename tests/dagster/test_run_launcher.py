"""TitanRunLauncher end to end: the run worker is a Titan job, and so is every step it launches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, instance_for_test

from tests.dagster import jobs
from tests.dagster.conftest import (
    expected_preload,
    preloaded_for,
    run_config,
    titan_compute_logs,
    warm_and_cold,
)
from tests.dagster.runs import create_run
from tests.helpers import ProcessCluster, pid_alive, wait_until
from titan_dagster import TitanRunLauncher, naming
from titan_dagster.run_launcher import TAG_RUN_WORKER

pytestmark = pytest.mark.integration


@pytest.fixture
def launcher_instance(titan: ProcessCluster, tmp_path: Path, warm: bool) -> Iterator[DagsterInstance]:
    """An instance whose runs are launched on Titan: run workers forked warm or cold as `warm` says
    (dagster.yaml's `run_launcher.config.warm`)."""
    home = tmp_path / "dagster-home"
    home.mkdir()
    overrides = {
        "compute_logs": titan_compute_logs(titan),
        "run_launcher": {
            "module": "titan_dagster",
            "class": "TitanRunLauncher",
            "config": {"address": titan.address, "token": titan.token, "cancel_timeout": 30.0, "warm": warm},
        },
    }
    with instance_for_test(temp_dir=str(home), overrides=overrides) as inst:
        assert isinstance(inst.run_launcher, TitanRunLauncher)
        yield inst


def finished_run(instance: DagsterInstance, run_id: str, timeout: float = 120) -> DagsterRun:
    def done() -> DagsterRun | None:
        run = instance.get_run_by_id(run_id)
        return run if run is not None and run.is_finished else None

    return wait_until(done, timeout=timeout, interval=0.2, what=f"run {run_id} to finish")


@warm_and_cold
def test_a_launched_run_runs_its_run_worker_and_its_steps_on_titan(
    titan: ProcessCluster, launcher_instance: DagsterInstance, warm: bool
) -> None:
    instance = launcher_instance
    run = create_run(instance, jobs.pipeline_job, run_config(titan, warm=warm))
    instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]  # no workspace needed

    run = finished_run(instance, run.run_id)
    assert run.status == DagsterRunStatus.SUCCESS
    ref = run.tags[TAG_RUN_WORKER]
    assert ref == f"{naming.run_worker_run_id(run.run_id)}/{naming.RUN_WORKER_JOB_ID}"
    worker_job = titan.client.wait(ref, timeout=60)
    assert worker_job.state == "SUCCEEDED"
    assert "RUN_SUCCESS" in titan.client.fetch_logs(ref)  # the run worker's own output is in Titan
    health = instance.run_launcher.check_run_worker_health(run)
    assert health.status.value == "SUCCESS", health
    debug = instance.run_launcher.get_run_worker_debug_info(run) or ""
    assert f"Titan job {ref} SUCCEEDED" in debug and "RUN_SUCCESS" in debug

    group = titan.client.list_runs(agent_run_id=naming.group_id(run.run_id))
    kinds = sorted((r.labels[naming.LABEL_KIND], r.labels.get(naming.LABEL_STEP_KEY, "")) for r in group)
    assert kinds == [("run_worker", ""), ("step", "evaluate"), ("step", "extract"), ("step", "train")]
    messages = [r.message for r in instance.all_logs(run.run_id)]
    assert any(f"Launched the run worker as Titan job {ref}" in m for m in messages)


@warm_and_cold
def test_a_launched_run_that_fails_fails_its_run_worker_job(
    titan: ProcessCluster, launcher_instance: DagsterInstance, tmp_path: Path, warm: bool
) -> None:
    instance = launcher_instance
    never_fixed = tmp_path / "never"
    config = run_config(titan, warm=warm, ops={"fragile": {"config": {"fixed": str(never_fixed)}}})
    run = create_run(instance, jobs.fragile_job, config)
    instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]

    run = finished_run(instance, run.run_id)
    assert run.status == DagsterRunStatus.FAILURE
    ref = run.tags[TAG_RUN_WORKER]
    worker_job = titan.client.wait(ref, timeout=60)
    # Its exit code came through, whether it was forked warm or started cold.
    assert worker_job.state == "FAILED" and worker_job.exit_code == 1, worker_job
    assert "RUN_FAILURE" in titan.client.fetch_logs(ref)
    health = instance.run_launcher.check_run_worker_health(run)
    assert health.status.value == "FAILED" and f"Titan job {ref} FAILED" in (health.msg or ""), health
    group = titan.client.list_runs(agent_run_id=naming.group_id(run.run_id))
    steps = sorted(r.labels[naming.LABEL_STEP_KEY] for r in group if r.labels[naming.LABEL_KIND] == "step")
    assert steps == ["fragile", "prepare"]  # report never started
    messages = [r.message for r in instance.all_logs(run.run_id)]
    assert any("Steps failed: ['fragile']" in m for m in messages), messages


@warm_and_cold
def test_terminating_a_launched_run_cancels_the_run_worker_and_the_step(
    titan: ProcessCluster, launcher_instance: DagsterInstance, tmp_path: Path, warm: bool
) -> None:
    instance = launcher_instance
    pid_file = tmp_path / "sleeper.pids"
    run = create_run(
        instance,
        jobs.sleeper_job,
        run_config(titan, warm=warm, ops={"sleeper": {"config": {"pid_file": str(pid_file)}}}),
    )
    instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]
    wait_until(pid_file.exists, timeout=90, interval=0.1, what="the sleeper step to start")
    step_pid, child_pid = (int(p) for p in pid_file.read_text().split())
    run = instance.get_run_by_id(run.run_id)
    assert run is not None
    ref = run.tags[TAG_RUN_WORKER]
    worker_pid = titan.client.get_job(ref).attempts[-1].pid
    assert pid_alive(worker_pid) and pid_alive(step_pid) and pid_alive(child_pid)
    assert preloaded_for(worker_pid) == preloaded_for(step_pid) == expected_preload(warm)
    assert instance.run_launcher.check_run_worker_health(run).status.value == "RUNNING"

    # What the UI's "Terminate" button calls:
    assert instance.run_launcher.terminate(run.run_id) is True

    for pid in (worker_pid, step_pid, child_pid):
        assert not pid_alive(pid), f"pid {pid} survived termination"
    run = finished_run(instance, run.run_id, timeout=30)
    assert run.status == DagsterRunStatus.CANCELED
    assert titan.client.get_job(ref).state == "CANCELLED"
    health = instance.run_launcher.check_run_worker_health(run)
    assert health.status.value == "FAILED" and f"Titan job {ref} CANCELLED" in (health.msg or "")
    step_ref = f"{naming.step_run_id(run.run_id, 'sleeper', 0)}/{naming.STEP_JOB_ID}"
    assert titan.client.get_job(step_ref).state == "CANCELLED"
    assert instance.run_launcher.terminate(run.run_id) is False  # already finished
