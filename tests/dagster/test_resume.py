"""Run monitoring resumes a run whose run worker died: `dagster-daemon run` (a real daemon process)
finds the run worker's Titan job failed and TitanRunLauncher starts another, which keeps the steps
already done and the step job still running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.instance.ref import InstanceRef  # tests may use Dagster internals

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
from titan_dagster import naming
from titan_dagster.run_launcher import TAG_RUN_WORKER

pytestmark = pytest.mark.integration
JOBS = Path(jobs.__file__)


@pytest.fixture
def monitored(titan: ProcessCluster, tmp_path: Path, warm: bool) -> Iterator[DagsterInstance]:
    """A Dagster home whose runs are launched on Titan (run workers warm or cold as `warm` says) and
    monitored by a `dagster-daemon run` child process (stopped by pid afterwards)."""
    home = tmp_path / "dagster-home"
    home.mkdir()
    config = {
        "run_launcher": {
            "module": "titan_dagster",
            "class": "TitanRunLauncher",
            "config": {"address": titan.address, "token": titan.token, "warm": warm},
        },
        "compute_logs": titan_compute_logs(titan),
        "run_monitoring": {"enabled": True, "poll_interval_seconds": 1, "max_resume_run_attempts": 1},
        "telemetry": {"enabled": False},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    # The storage made (its SQLite schemas created) before anything else opens it: two processes
    # creating one fresh store at once fail ("table alembic_version already exists").
    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    instance.get_runs(limit=1)
    instance.all_instigator_state()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    with open(tmp_path / "daemon.log", "wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "dagster._daemon", "run", "-f", str(JOBS)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        yield instance
    finally:
        instance.dispose()
        # Its code server runs in a session of its own: stopped by pid, once the daemon is gone.
        children = psutil.Process(daemon.pid).children(recursive=True)
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.terminate()
        _, alive = psutil.wait_procs(children, timeout=30)
        for child in alive:
            child.kill()
    assert not pid_alive(daemon.pid)


@warm_and_cold
def test_a_run_whose_run_worker_is_killed_is_resumed_and_keeps_what_was_done(
    titan: ProcessCluster, monitored: DagsterInstance, tmp_path: Path, warm: bool
) -> None:
    instance = monitored
    gate = tmp_path / "gate"
    config = run_config(titan, warm=warm, ops={"held": {"config": {"gate": str(gate)}}})
    run = create_run(instance, jobs.resumable_job, config)
    instance.launch_run(run.run_id, workspace=None)  # type: ignore[arg-type]  # no workspace needed
    first_worker = instance.get_run_by_id(run.run_id).tags[TAG_RUN_WORKER]  # type: ignore[union-attr]

    def step_runs(step: str) -> list[str]:
        return [
            r.id
            for r in titan.client.list_runs(agent_run_id=naming.group_id(run.run_id))
            if r.labels.get(naming.LABEL_STEP_KEY) == step
        ]

    try:
        wait_until(lambda: step_runs("held") and titan.client.get_job(f"{step_runs('held')[0]}/step").state == "RUNNING",
                   120, 0.1, what="the held step to run")  # fmt: skip
    except AssertionError:
        found = instance.get_run_by_id(run.run_id)
        events = [e.message for e in instance.all_logs(run.run_id)][-15:]
        worker = titan.client.get_job(first_worker)
        raise AssertionError(
            f"the held step did not run: run {found and found.status}; run worker {worker.state} {worker.reason}\n"
            + "\n".join(events)
            + "\n--- its output:\n"
            + titan.client.fetch_logs(first_worker)[-3000:]
            + "\n--- daemon:\n"
            + (tmp_path / "daemon.log").read_text(errors="replace")[-3000:]
        ) from None
    pid = titan.client.get_job(first_worker).attempts[0].pid
    held_pid = titan.client.get_job(f"{step_runs('held')[0]}/step").attempts[-1].pid
    assert preloaded_for(pid) == preloaded_for(held_pid) == expected_preload(warm)
    os.kill(pid, signal.SIGKILL)  # the run worker dies; its step job runs on

    def resumed() -> str | None:
        current = instance.get_run_by_id(run.run_id).tags[TAG_RUN_WORKER]  # type: ignore[union-attr]
        return current if current != first_worker else None

    second_worker = wait_until(resumed, 120, 0.2, what="run monitoring to resume the run")
    assert second_worker == f"{naming.run_worker_run_id(run.run_id, 1)}/{naming.RUN_WORKER_JOB_ID}"
    # The resumed run worker waits for the held step too, so it is still running.
    started = wait_until(lambda: [a.pid for a in titan.client.get_job(second_worker).attempts if a.pid],
                         60, 0.1, what="the resumed run worker to start")  # fmt: skip
    assert preloaded_for(started[-1]) == expected_preload(warm)
    gate.touch()

    def finished() -> DagsterRunStatus | None:
        found = instance.get_run_by_id(run.run_id)
        return found.status if found is not None and found.is_finished else None

    assert wait_until(finished, 180, 0.2, what="the resumed run to finish") == DagsterRunStatus.SUCCESS
    assert titan.client.get_job(first_worker).state == "FAILED"
    assert titan.client.wait(second_worker, 60).state == "SUCCEEDED"
    # Done steps kept, the running step looked after: each step ran in one Titan job.
    assert [len(step_runs(step)) for step in ("first", "held", "last")] == [1, 1, 1]
    succeeded = {
        e.step_key
        for e in instance.all_logs(run.run_id)
        if e.dagster_event and e.dagster_event.is_step_success
    }
    assert succeeded == {"first", "held", "last"}
    messages = [e.message for e in instance.all_logs(run.run_id)]
    assert any("Resumed the run (attempt 1) with a new run worker" in m for m in messages)
