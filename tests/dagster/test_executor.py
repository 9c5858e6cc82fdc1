"""titan_executor on a real Titan master and real workers: every step is a Titan job."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

import pytest
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    ReexecutionOptions,
    execute_job,
    reconstructable,
)

from tests.dagster import jobs
from tests.dagster.conftest import expected_preload, preloaded, run_config, warm_and_cold
from tests.helpers import ProcessCluster, start_leader_and_standby, wait_until
from titan_dagster import naming
from titan_runtime import TitanClient

pytestmark = pytest.mark.integration

#: The events of a step's life (not the engine's remarks about it, whose order varies).
LIFECYCLE = {
    "STEP_WORKER_STARTING", "STEP_WORKER_STARTED", "STEP_START", "STEP_RESTARTED", "LOADED_INPUT",
    "STEP_INPUT", "STEP_OUTPUT", "HANDLED_OUTPUT", "STEP_UP_FOR_RETRY", "STEP_SUCCESS", "STEP_FAILURE",
}  # fmt: skip


def step_events(instance: DagsterInstance, run_id: str, step_key: str) -> list[str]:
    """The types of the lifecycle events of one step of a run, in order."""
    return [
        r.dagster_event.event_type_value
        for r in instance.all_logs(run_id)
        if r.dagster_event is not None
        and r.step_key == step_key
        and r.dagster_event.event_type_value in LIFECYCLE
    ]


@warm_and_cold
def test_steps_pass_outputs_and_the_gpu_step_runs_on_the_gpu_worker(
    titan: ProcessCluster, instance: DagsterInstance, warm: bool
) -> None:
    with execute_job(
        reconstructable(jobs.pipeline_job), instance=instance, run_config=run_config(titan, warm=warm)
    ) as result:
        assert result.success, result.all_events
        model = result.output_for_node("train")
        scored = result.output_for_node("evaluate")
        run_id = result.run_id
    assert model["weights"] == 14
    assert scored["score"] == 28
    assert preloaded(model["parent"]) == preloaded(scored["parent"]) == expected_preload(warm)
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
    # Each step's own events, the same whether it was forked warm or started cold.
    started = ["STEP_WORKER_STARTING", "STEP_WORKER_STARTED", "STEP_START"]
    produced = ["STEP_OUTPUT", "HANDLED_OUTPUT", "STEP_SUCCESS"]
    assert step_events(instance, run_id, "extract") == started + produced
    for step in ("train", "evaluate"):
        assert step_events(instance, run_id, step) == [*started, "LOADED_INPUT", "STEP_INPUT", *produced]


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


@warm_and_cold
def test_a_step_that_dies_before_reporting_fails_with_the_tail_of_its_titan_log(
    titan: ProcessCluster, instance: DagsterInstance, warm: bool
) -> None:
    with execute_job(
        reconstructable(jobs.crash_job), instance=instance, run_config=run_config(titan, warm=warm)
    ) as result:
        assert not result.success
        run_id = result.run_id
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status == DagsterRunStatus.FAILURE
    lifecycle = ["STEP_WORKER_STARTING", "STEP_WORKER_STARTED", "STEP_START", "STEP_FAILURE"]
    assert step_events(instance, run_id, "crash") == lifecycle
    message = step_failure_message(instance, run_id, "crash")
    ref = f"{naming.step_run_id(run_id, 'crash', 0)}/{naming.STEP_JOB_ID}"
    assert "failed health check" in message
    assert f"Titan job {ref} FAILED" in message
    assert "exit code 3" in message
    # The lines the process printed just before it died, from the worker's log via the master:
    assert "CUDA out of memory (CRASH-MARKER-7f3a)" in message
    assert "crash: loading the model" in message


@warm_and_cold
def test_a_failed_run_re_executed_from_failure_runs_only_the_failed_steps_again(
    titan: ProcessCluster, instance: DagsterInstance, warm: bool, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    config = run_config(titan, warm=warm, ops={"fragile": {"config": {"fixed": str(fixed)}}})
    with execute_job(reconstructable(jobs.fragile_job), instance=instance, run_config=config) as failed:
        assert not failed.success
        failed_id = failed.run_id
    run = instance.get_run_by_id(failed_id)
    assert run is not None and run.status == DagsterRunStatus.FAILURE
    assert step_events(instance, failed_id, "fragile")[-1] == "STEP_FAILURE"
    [failure] = instance.all_logs(failed_id, of_type=DagsterEventType.STEP_FAILURE)
    error = failure.dagster_event.step_failure_data.error  # the op's exception is its cause
    assert error is not None and error.cause is not None and "FRAGILE-MARKER" in error.cause.message
    assert step_events(instance, failed_id, "report") == []  # never started

    fixed.touch()
    with execute_job(
        reconstructable(jobs.fragile_job),
        instance=instance,
        run_config=config,
        reexecution_options=ReexecutionOptions.from_failure(failed_id, instance),
    ) as result:
        assert result.success
        repaired = result.output_for_node("fragile")
        reported = result.output_for_node("report")
        run_id = result.run_id
    assert reported["value"] == 42  # prepare's output, kept from the failed run, went through
    assert preloaded(repaired["parent"]) == preloaded(reported["parent"]) == expected_preload(warm)
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status == DagsterRunStatus.SUCCESS
    assert run.parent_run_id == failed_id == run.root_run_id
    assert step_events(instance, run_id, "prepare") == []  # not run again
    assert step_events(instance, run_id, "fragile")[-1] == "STEP_SUCCESS"

    def steps_on_titan(dagster_run_id: str) -> list[str]:
        group = titan.client.list_runs(agent_run_id=naming.group_id(dagster_run_id))
        return sorted(r.labels[naming.LABEL_STEP_KEY] for r in group)

    assert steps_on_titan(failed_id) == ["fragile", "prepare"]
    assert steps_on_titan(run_id) == ["fragile", "report"]


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


@warm_and_cold
def test_a_retry_is_a_second_titan_job_and_a_relaunch_is_not_a_duplicate(
    titan: ProcessCluster, instance: DagsterInstance, warm: bool
) -> None:
    with execute_job(
        reconstructable(jobs.retry_job), instance=instance, run_config=run_config(titan, warm=warm)
    ) as result:
        assert result.success
        output = result.output_for_node("flaky")
        run_id = result.run_id
    first, second = (naming.step_run_id(run_id, "flaky", n) for n in (0, 1))
    assert output["retry_number"] == 1
    assert output["titan_run"] == second
    assert preloaded(output["parent"]) == expected_preload(warm)
    assert step_events(instance, run_id, "flaky") == [
        *("STEP_WORKER_STARTING", "STEP_WORKER_STARTED", "STEP_START", "STEP_UP_FOR_RETRY"),
        *("STEP_WORKER_STARTING", "STEP_WORKER_STARTED", "STEP_RESTARTED"),
        *("STEP_OUTPUT", "HANDLED_OUTPUT", "STEP_SUCCESS"),
    ]
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


def test_a_run_rides_out_a_failover_to_a_standby_master(
    standby_masters: tuple[ProcessCluster, ProcessCluster], tmp_path: Path
) -> None:
    """titan_executor given both masters' addresses: the leader is killed while a step runs; the
    standby leads, adopts the step, and the run succeeds with the step run once."""
    from dagster import instance_for_test

    a, b = standby_masters
    both = start_leader_and_standby(a, b)
    a.add_worker("cpu", args=("--master", both))
    gate = tmp_path / "gate"
    client = TitanClient(address=both, token=a.token)
    problems: list[BaseException] = []

    def leader_dies() -> None:
        try:
            wait_until(lambda: any(w.running for w in client.list_workers()), 60, what="the step to run")
            a.kill_master()
            b.wait_for_master(30)
            gate.touch()
        except BaseException as exc:
            problems.append(exc)
            gate.touch()

    killer = threading.Thread(target=leader_dies, daemon=True)
    killer.start()
    config = run_config(a, address=both, ops={"chatty": {"config": {"gate": str(gate)}}})
    home = tmp_path / "dagster-home"
    home.mkdir()
    with instance_for_test(temp_dir=str(home)) as instance:
        with execute_job(reconstructable(jobs.chatty_job), instance=instance, run_config=config) as result:
            assert result.success, result.all_events
            assert result.output_for_node("chatty") == "ok"
            run_id = result.run_id
        assert step_events(instance, run_id, "chatty").count("STEP_START") == 1
    killer.join(60)
    assert not problems, problems
    [step] = [r for r in client.list_runs() if r.id == naming.step_run_id(run_id, "chatty", 0)]
    assert len(client.get_run(step.id).jobs[0].attempts) == 1  # adopted by the new leader, not run again
    client.close()
