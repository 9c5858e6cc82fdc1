"""titan_executor on a real Titan master and real workers: every step is a Titan job."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, execute_job, reconstructable

from tests.dagster import jobs
from tests.dagster.conftest import run_config
from tests.helpers import ProcessCluster, wait_until
from titan_dagster import naming

pytestmark = pytest.mark.integration


def test_steps_pass_outputs_and_the_gpu_step_runs_on_the_gpu_worker(
    titan: ProcessCluster, instance: DagsterInstance
) -> None:
    with execute_job(
        reconstructable(jobs.pipeline_job), instance=instance, run_config=run_config(titan)
    ) as result:
        assert result.success, result.all_events
        model = result.output_for_node("train")
        scored = result.output_for_node("evaluate")
        run_id = result.run_id
    assert model["weights"] == 14
    assert scored["score"] == 28
    # Each step was its own Titan job, in its own process, never the test's.
    train_ref = f"{naming.step_run_id(run_id, 'train', 0)}/{naming.STEP_JOB_ID}"
    record = titan.client.wait(train_ref, timeout=30)
    assert record.state == "SUCCEEDED"
    assert record.worker_name == "gpu" == model["worker"]
    assert record.tags == ["GPU"] and record.priority == 7
    assert model["titan_run"] == naming.step_run_id(run_id, "train", 0)
    titan_runs = titan.client.list_runs(agent_run_id=naming.group_id(run_id))
    assert sorted(r.labels[naming.LABEL_STEP_KEY] for r in titan_runs) == ["evaluate", "extract", "train"]
    # Each step's launch event names its Titan job (the UI shows it in the step's events).
    launches = instance.all_logs(run_id, of_type=DagsterEventType.STEP_WORKER_STARTING)
    named = {r.step_key: r.dagster_event.engine_event_data.metadata["Titan job"].value for r in launches}
    assert named["train"] == train_ref
    assert set(named) == {"extract", "train", "evaluate"}


def step_failure_message(instance: DagsterInstance, run_id: str, step_key: str) -> str:
    failures = [
        record.dagster_event
        for record in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
        if record.dagster_event and record.dagster_event.step_key == step_key
    ]
    assert len(failures) == 1, failures
    error = failures[0].step_failure_data.error
    assert error is not None
    return error.message


def test_a_step_that_dies_before_reporting_fails_with_the_tail_of_its_titan_log(
    titan: ProcessCluster, instance: DagsterInstance
) -> None:
    with execute_job(
        reconstructable(jobs.crash_job), instance=instance, run_config=run_config(titan)
    ) as result:
        assert not result.success
        run_id = result.run_id
    message = step_failure_message(instance, run_id, "crash")
    ref = f"{naming.step_run_id(run_id, 'crash', 0)}/{naming.STEP_JOB_ID}"
    assert "failed health check" in message
    assert f"Titan job {ref} FAILED" in message
    assert "exit code 3" in message
    # The lines the process printed just before it died, from the worker's log via the master:
    assert "CUDA out of memory (CRASH-MARKER-7f3a)" in message
    assert "crash: loading the model" in message


def test_a_step_over_its_titan_timeout_is_killed_and_fails_saying_so(
    titan: ProcessCluster, instance: DagsterInstance
) -> None:
    with execute_job(
        reconstructable(jobs.timeout_job), instance=instance, run_config=run_config(titan)
    ) as result:
        assert not result.success
        run_id = result.run_id
    # Titan's SIGTERM reaches the step as an interrupt, which is all Dagster's failure says...
    assert "Interrupted" in step_failure_message(instance, run_id, "overdue")
    # ...so the executor adds how the Titan job ended, next to the failure.
    explained = [
        r.message
        for r in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
        if r.step_key == "overdue" and "ended badly" in r.message
    ]
    assert len(explained) == 1 and "timed out after 5s" in explained[0], explained
    record = titan.client.get_job(f"{naming.step_run_id(run_id, 'overdue', 0)}/{naming.STEP_JOB_ID}")
    assert record.state == "FAILED" and record.attempts[-1].pid


def test_a_retry_is_a_second_titan_job_and_a_relaunch_is_not_a_duplicate(
    titan: ProcessCluster, instance: DagsterInstance
) -> None:
    with execute_job(
        reconstructable(jobs.retry_job), instance=instance, run_config=run_config(titan)
    ) as result:
        assert result.success
        output = result.output_for_node("flaky")
        run_id = result.run_id
    first, second = (naming.step_run_id(run_id, "flaky", n) for n in (0, 1))
    assert output["retry_number"] == 1
    assert output["titan_run"] == second
    titan_runs = {r.id: r for r in titan.client.list_runs(agent_run_id=naming.group_id(run_id))}
    assert set(titan_runs) == {first, second}
    assert [titan_runs[rid].labels[naming.LABEL_ATTEMPT] for rid in (first, second)] == ["0", "1"]
    for rid in (first, second):
        # Each attempt ran once: Titan itself never retried it (Dagster owns retries). The step
        # process may still be exiting when the run has ended: it reported success before.
        record = titan.client.wait(f"{rid}/{naming.STEP_JOB_ID}", timeout=30)
        assert record.state == "SUCCEEDED" and len(record.attempts) == 1
    assert "the first attempt fails on purpose" in titan.client.fetch_logs(f"{first}/{naming.STEP_JOB_ID}")


def test_a_step_whose_worker_dies_fails_as_lost(
    titan: ProcessCluster, instance: DagsterInstance, tmp_path: Path
) -> None:
    """The machine running a step dies (worker and step processes killed): the step fails, saying so."""
    pid_file = tmp_path / "sleeper.pids"
    problems: list[BaseException] = []

    def machine_dies() -> None:
        try:
            wait_until(pid_file.exists, timeout=60, interval=0.1, what="the sleeper step to start")
            step_pid, child_pid = (int(p) for p in pid_file.read_text().split())
            [name] = [w.name for w in titan.client.list_workers() if w.running]
            titan.workers[name].kill()
            titan.workers.pop(name).wait(30)
            for pid in (step_pid, child_pid):  # a step forked by the worker's launcher died with it
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        except BaseException as exc:
            problems.append(exc)

    killer = threading.Thread(target=machine_dies, daemon=True)
    killer.start()
    config = run_config(titan, ops={"sleeper": {"config": {"pid_file": str(pid_file)}}})
    with execute_job(reconstructable(jobs.sleeper_job), instance=instance, run_config=config) as result:
        assert not result.success
        run_id = result.run_id
    killer.join(30)
    assert not problems, problems
    message = step_failure_message(instance, run_id, "sleeper")
    assert "failed health check" in message and "lost" in message, message
