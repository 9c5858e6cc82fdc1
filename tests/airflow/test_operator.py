"""TitanOperator end to end: a real Titan cluster, a real Airflow metadata DB, dag.test() in a subprocess."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.airflow.harness import task_log_lines
from tests.helpers import ProcessCluster, pid_alive, start_leader_and_standby, wait_until
from titan_runtime import TitanClient

pytestmark = pytest.mark.integration


def titan_runs(cluster: ProcessCluster, dag_id: str) -> list:
    return [r for r in cluster.client.list_runs() if r.labels.get("airflow.dag_id") == dag_id]


def test_output_streams_into_the_task_log_while_the_job_runs_and_the_result_goes_to_xcom(
    cluster: ProcessCluster, run_dag, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    running = run_dag("titan_success", cluster, {"word": "wörld", "gate": str(gate)})
    # The first line must reach the task log while the remote job is still blocked on the gate.
    running.wait_for_log("hello wörld")
    [run] = wait_until(lambda: titan_runs(cluster, "titan_success"), what="the Titan run")
    assert cluster.client.get_job(run.id).state == "RUNNING"
    assert "line 0" not in running.log()
    gate.touch()
    result = running.wait()

    assert result.state == "success", result.log
    assert result.task_state("hello") == "success"
    lines = task_log_lines(result.log)
    hello = lines.index("hello wörld")
    assert lines[hello + 1 : hello + 7] == [*(f"line {i}" for i in range(5)), "[stderr] warning about wörld"]
    assert result.xcom["hello"]["return_value"] == {"word": "wörld", "try": 1}
    ref = result.xcom["hello"]["titan_ref"]
    assert ref.startswith("af_titan_success.hello.") and ref.endswith(".try1/hello")
    # The downstream task got both XComs through templated args.
    assert f"got wörld {ref}" in lines
    runs = sorted(titan_runs(cluster, "titan_success"), key=lambda r: r.created_at)
    assert [r.labels["airflow.task_id"] for r in runs] == ["hello", "echo_result"]
    assert {r.labels["airflow.run_id"] for r in runs} == {result.run_id}
    assert [r.state for r in runs] == ["SUCCEEDED", "SUCCEEDED"]


def test_failure_raises_with_the_tail_of_the_remote_log(cluster: ProcessCluster, run_dag) -> None:
    result = run_dag("titan_failure", cluster).wait()
    assert result.state == "failed"
    assert result.task_state("fails") == "failed"
    log = result.log
    assert "TitanJobFailed" in log
    assert "FAILED (exit code 3)" in log
    message = log[log.index("Last 10 line(s) of its output:") :]
    assert "[stderr] boom: the input was bad" in message
    assert "step 49" in message and "step 41" in message
    assert "step 40" not in message.split("Whole output")[0]
    # Every line was streamed into the task log before the failure.
    assert [f"step {i}" for i in range(50)] == [m for m in task_log_lines(log) if m.startswith("step ")]


def test_killing_the_task_cancels_the_remote_process_tree(
    cluster: ProcessCluster, run_dag, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pids"
    running = run_dag("titan_kill", cluster, {"pidfile": str(pidfile)})
    wait_until(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2, 120, what="the job's pids")
    pids = [int(p) for p in pidfile.read_text().split()]
    assert all(pid_alive(pid) for pid in pids)
    [run] = titan_runs(cluster, "titan_kill")
    assert cluster.client.get_job(run.id).attempts[-1].pid == pids[0]
    # What Airflow's supervisor does when a user marks the task failed: SIGTERM to the task process.
    running.signal(signal.SIGTERM)
    result = running.wait()
    for pid in pids:
        assert not pid_alive(pid), f"remote process {pid} survived the kill"
    assert cluster.client.get_job(run.id).state == "CANCELLED"
    assert result.task_state("sleeper") == "failed"
    assert "Cancelling Titan job" in result.log


def test_a_retry_is_a_new_titan_run_and_never_a_duplicate(cluster: ProcessCluster, run_dag) -> None:
    result = run_dag("titan_retry", cluster).wait()
    assert result.state == "success", result.log
    assert result.tasks["flaky"] == {"state": "success", "try_number": 2}
    runs = sorted(titan_runs(cluster, "titan_retry"), key=lambda r: r.created_at)
    assert [r.labels["airflow.try_number"] for r in runs] == ["1", "2"]
    assert [r.id.rsplit(".", 1)[1] for r in runs] == ["try1", "try2"]
    jobs = [cluster.client.get_run(r.id).jobs for r in runs]
    assert [[(j.state, len(j.attempts)) for j in run_jobs] for run_jobs in jobs] == [
        [("FAILED", 1)],
        [("SUCCEEDED", 1)],
    ]
    assert {r.labels["airflow.run_id"] for r in runs} == {result.run_id}
    assert [m for m in task_log_lines(result.log) if m.startswith("try ")] == ["try 1", "try 2"]


def test_project_folder_ships_with_the_job(cluster: ProcessCluster, run_dag) -> None:
    result = run_dag("titan_project", cluster).wait()
    assert result.state == "success", result.log
    lines = task_log_lines(result.log)
    assert "HI!" in lines
    assert "FROM A COMMAND!" in lines


def test_the_log_stream_survives_a_master_restart_without_losing_or_repeating_lines(
    cluster: ProcessCluster, run_dag, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    running = run_dag("titan_success", cluster, {"word": "again", "gate": str(gate)})
    running.wait_for_log("hello again")
    cluster.kill_master()  # SIGKILL: the operator's stream breaks mid-job
    cluster.start_master()
    [run] = wait_until(lambda: titan_runs(cluster, "titan_success"), what="the run after the restart")
    wait_until(lambda: cluster.client.get_job(run.id).state == "RUNNING", what="the job to be RUNNING")
    gate.touch()
    result = running.wait()
    assert result.state == "success", result.log
    assert "Lost the Titan log stream" in result.log
    lines = task_log_lines(result.log)
    hello = lines.index("hello again")
    assert lines.count("hello again") == 1
    assert [m for m in lines[hello:] if m.startswith("line ")] == [f"line {i}" for i in range(5)]
    assert result.xcom["hello"]["return_value"] == {"word": "again", "try": 1}


def test_the_operator_rides_out_a_failover_to_a_standby_master(
    standby_masters: tuple[ProcessCluster, ProcessCluster], run_dag, tmp_path: Path
) -> None:
    """The `titan` connection names both masters; the leader is killed mid-job: the task goes on
    against the new leader, every line once, and succeeds."""
    a, b = standby_masters
    both = start_leader_and_standby(a, b)
    a.add_worker("w1", args=("--master", both))
    gate = tmp_path / "gate"
    running = run_dag("titan_success", a, {"word": "over", "gate": str(gate)}, address=both)
    running.wait_for_log("hello over")
    a.kill_master()
    b.wait_for_master(30)
    client = TitanClient(address=both, token=a.token)
    [run] = wait_until(lambda: titan_runs(b, "titan_success"), what="the run at the new leader")
    wait_until(lambda: client.get_job(run.id).state == "RUNNING", what="the job adopted")
    gate.touch()
    result = running.wait()
    client.close()
    assert result.state == "success", result.log
    lines = task_log_lines(result.log)
    assert lines.count("hello over") == 1
    hello = lines.index("hello over")
    assert [m for m in lines[hello:] if m.startswith("line ")] == [f"line {i}" for i in range(5)]
