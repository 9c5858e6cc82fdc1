"""Deferrable TitanOperator and TitanJobTrigger against a real Titan cluster and real Airflow code."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.harness import PYTHON, AirflowHome, free_port, task_log_lines
from tests.helpers import ProcessCluster, pid_alive, wait_until

pytestmark = pytest.mark.integration
DRIVER = Path(__file__).with_name("drive_trigger.py")


def titan_runs(cluster: ProcessCluster, dag_id: str) -> list:
    return [r for r in cluster.client.list_runs() if r.labels.get("airflow.dag_id") == dag_id]


def drive(
    home: AirflowHome, cluster: ProcessCluster, tmp_path: Path, scenario: str, **env: str
) -> dict[str, Any]:
    out = tmp_path / f"{scenario}.json"
    argv = [PYTHON, str(DRIVER), scenario, "--out", str(out), "--gate", str(tmp_path / "gate")]
    done = subprocess.run(
        [*argv, "--pidfile", str(tmp_path / "pids")],
        env=home.env(cluster, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text())


def test_deferred_task_frees_its_slot_and_catches_up_the_whole_log(
    cluster: ProcessCluster, run_dag, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    running = run_dag("titan_deferrable", cluster, {"word": "later", "gate": str(gate)})
    # dag.test runs the trigger inline only once the task has deferred (its slot released).
    running.wait_for_log("[DAG TEST] running trigger in line")
    [run] = titan_runs(cluster, "titan_deferrable")
    wait_until(lambda: cluster.client.get_job(run.id).state == "RUNNING", what="the job to run")
    assert "hello later" not in task_log_lines(running.log())
    gate.touch()
    result = running.wait()

    assert result.state == "success", result.log
    assert result.xcom["deferred"]["return_value"] == {"word": "later", "try": 1}
    log = result.log
    resumed = log[log.index("[DAG TEST] Trigger completed") :]
    lines = task_log_lines(resumed)
    start = lines.index("hello later")
    assert lines[start + 1 : start + 201] == [f"line {i}" for i in range(200)]
    assert lines[start + 201] == "[stderr] warning about later"
    assert "(202 line(s) of output from Titan job" in resumed
    # One Titan run for the try, with one attempt: deferring did not submit anything again.
    [run] = titan_runs(cluster, "titan_deferrable")
    [job] = cluster.client.get_run(run.id).jobs
    assert (job.state, len(job.attempts)) == ("SUCCEEDED", 1)


def test_deferred_failure_raises_with_the_log_tail(cluster: ProcessCluster, run_dag, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    running = run_dag("titan_deferrable_failure", cluster, {"gate": str(gate)})
    running.wait_for_log("[DAG TEST] running trigger in line")
    gate.touch()
    result = running.wait()
    assert result.state == "failed"
    log = result.log
    assert "FAILED (exit code 3)" in log
    message = log[log.index("Last 5 line(s) of its output:") :].split("Whole output")[0]
    assert "[stderr] boom: the input was bad" in message
    assert "step 46" in message and "step 45" not in message


def test_triggerer_restart_and_repeated_execute_never_submit_twice(
    airflow_home: AirflowHome, cluster: ProcessCluster, tmp_path: Path
) -> None:
    seen = drive(airflow_home, cluster, tmp_path, "restart")
    first, second = seen["refs"]
    assert first == second
    assert not seen["fired_while_job_blocked"]
    # cleanup() on a triggerer restart leaves the job running.
    assert seen["state_after_restart"] == "RUNNING"
    assert seen["event"]["state"] == "SUCCEEDED"
    assert seen["result"] == "done"
    runs = titan_runs(cluster, "driven")
    assert [r.id for r in runs] == [first.split("/")[0]]
    [job] = cluster.client.get_run(runs[0].id).jobs
    assert (job.state, len(job.attempts)) == ("SUCCEEDED", 1)


def test_killing_a_deferred_task_cancels_the_remote_process_tree(
    airflow_home: AirflowHome, cluster: ProcessCluster, tmp_path: Path
) -> None:
    seen = drive(airflow_home, cluster, tmp_path, "kill")
    for pid in seen["pids"]:
        assert not pid_alive(pid), f"remote process {pid} survived the trigger's on_kill"
    assert seen["event"]["state"] == "CANCELLED"
    assert cluster.client.get_job(seen["ref"]).state == "CANCELLED"
    assert seen["raised"].startswith("TitanJobFailed: Titan job ")
    assert "CANCELLED" in seen["raised"]


def test_a_try_replaced_by_a_later_one_fires_nothing_and_its_late_event_ends_nothing(
    airflow_home: AirflowHome, cluster: ProcessCluster, tmp_path: Path
) -> None:
    seen = drive(airflow_home, cluster, tmp_path, "stale")
    first, second = seen["refs"]
    assert first.endswith(".try1/stale") and second.endswith(".try2/stale")
    assert seen["first_state"] == "CANCELLED"  # try 2 cancelled it before submitting its own
    assert not seen["first_fired"]  # an event would be handed to try 2 (Airflow's clear race)
    assert seen["after_late_event"] == f"deferred on {second}"  # not failed with try 1's end
    assert seen["result"] == "done"
    assert cluster.client.get_job(second).state == "SUCCEEDED"


def test_trigger_gives_up_on_an_unreachable_master_with_a_clear_error(
    airflow_home: AirflowHome, cluster: ProcessCluster, tmp_path: Path
) -> None:
    nowhere = json.dumps({"conn_type": "titan", "host": "127.0.0.1", "port": free_port(), "password": "x"})
    seen = drive(airflow_home, cluster, tmp_path, "unreachable", AIRFLOW_CONN_TITAN_NOWHERE=nowhere)
    assert seen["event"]["status"] == "error"
    assert "cannot reach the Titan master at 127.0.0.1:" in seen["event"]["message"]
    assert seen["raised"].startswith(
        "TitanJobFailed: could not follow Titan job some-run/some-job: cannot reach"
    )
