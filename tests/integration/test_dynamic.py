"""Dynamic DAGs end to end: runtime mutation, branches, loops, gates, fallbacks, schedules, agent runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster, wait_until
from titan_runtime import InvalidJob, PermissionDenied, TitanJob

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "example_pipelines"


def sdk(cluster: ProcessCluster, script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(cluster.env(), TITAN_TOKEN=cluster.token)
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=180
    )


@pytest.mark.parametrize(
    ("load", "ran", "skipped"), [(0.9, "deep_merge", "fast_scan"), (0.1, "fast_scan", "deep_merge")]
)
def test_dynamic_switch(cluster: ProcessCluster, load: float, ran: str, skipped: str) -> None:
    out = sdk(cluster, EXAMPLES / "dynamic_switch" / "dynamic_switch.py", "--load", str(load))
    assert out.returncode == 0, out.stdout + out.stderr
    run_id = out.stdout.split()[2]
    states = {j.id: j.state for j in cluster.client.get_run(run_id).jobs}
    assert states[ran] == "SUCCEEDED" and states[skipped] == "SKIPPED" and states["report"] == "SUCCEEDED"
    expected = "the deep path found 6 issue(s)" if load > 0.5 else "the fast path found 1 issue(s)"
    assert expected in out.stdout


def test_self_healing_agent_extends_its_run_until_the_task_passes(cluster: ProcessCluster) -> None:
    out = cluster.cli("run", "--wait", str(EXAMPLES / "self_healing" / "self_healing.yaml"), timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    run_id = out.stdout.splitlines()[0]
    assert cluster.client.get_result(f"{run_id}/agent") == {
        "attempts": 3,
        "repairs": ["clear_cache", "raise_memory"],
    }
    states = {j.id: j.state for j in cluster.client.get_run(run_id).jobs}
    assert states == {
        "agent": "SUCCEEDED",
        "attempt_1": "FAILED",
        "repair_1": "SUCCEEDED",
        "attempt_2": "FAILED",
        "repair_2": "SUCCEEDED",
        "attempt_3": "SUCCEEDED",
    }


def test_research_agent_loops_then_synthesizes(cluster: ProcessCluster) -> None:
    out = cluster.cli("run", "--follow", str(EXAMPLES / "research_agent" / "research.yaml"), timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[evaluate@2] round 2: 3 findings, score 1.00" in out.stdout
    assert "[research@2.2] round 2: researching failure modes" in out.stdout
    run_id = out.stderr.splitlines()[0]
    assert cluster.client.get_result(f"{run_id}/synthesize") == {
        "rounds": 2,
        "topics": ["latency", "cost", "failure modes"],
    }
    evaluate2 = cluster.client.get_job(f"{run_id}/evaluate@2")
    assert evaluate2.iteration == 2
    assert json.loads(cluster.cli("status", f"{run_id}/evaluate@2", "--json").stdout)["iteration"] == 2
    assert cluster.client.get_job(f"{run_id}/synthesize").parents == ["evaluate@2"]


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_approval_gate(cluster: ProcessCluster, decision: str) -> None:
    out = cluster.cli("run", str(EXAMPLES / "approval" / "approval.yaml"))
    run_id = out.stdout.strip()
    early = cluster.cli(decision, run_id, "train")
    assert early.returncode == 1 and "has no approval gate" in early.stderr
    wait_until(lambda: cluster.client.get_job(f"{run_id}/preprocess").state == "WAITING_APPROVAL", 60)
    gates = json.loads(cluster.cli("approvals", "--json").stdout)
    assert [(g["ref"], g["state"], g["approval_message"]) for g in gates] == [
        (f"{run_id}/preprocess", "WAITING_APPROVAL", "Check the preprocessed data before training starts")
    ]
    assert cluster.client.get_job(f"{run_id}/train").state == "PENDING"
    out = cluster.cli(decision, run_id, "preprocess", "--comment", "checked by hand")
    assert out.returncode == 0, out.stderr
    record = cluster.client.wait_run(run_id, 60)
    decided = cluster.client.get_job(f"{run_id}/preprocess")
    assert decided.decision["decision"] == ("approved" if decision == "approve" else "rejected")
    assert (
        decided.decision["comment"] == "checked by hand" and decided.decision["by"] and decided.decision["at"]
    )
    if decision == "approve":
        assert record.state == "SUCCEEDED"
        assert cluster.client.fetch_logs(f"{run_id}/train") == "train: trained on 1000 rows\n"
    else:
        assert record.state == "FAILED"
        assert decided.reason.endswith(": checked by hand") and decided.reason.startswith("rejected by ")
        assert cluster.client.get_job(f"{run_id}/train").state == "UPSTREAM_FAILED"
    again = cluster.cli("approve", run_id, "preprocess")
    assert again.returncode == 1 and "already decided" in again.stderr


def test_gpu_attempt_fails_and_the_fallback_runs_on_general_hardware(make_cluster) -> None:
    c = make_cluster()
    c.add_worker("gpu-box", tags=["GPU"], slots=1)
    c.add_worker("cpu-box", slots=1)
    out = c.cli("run", "--wait", str(EXAMPLES / "fallback" / "fallback.yaml"))
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.splitlines()[0]
    assert c.client.get_result(f"{run_id}/train") == {"worker": "cpu-box", "attempt": 2}
    first = c.client.get_job(f"{run_id}/train").attempts[0]
    assert first.state == "FAILED" and "CUDA out of memory on gpu-box" in c.client.fetch_logs(
        f"{run_id}/train", attempt=1
    )


def test_jobs_can_extend_only_their_own_run(cluster: ProcessCluster, tmp_path: Path) -> None:
    client = cluster.client
    other = client.submit_job(TitanJob("victim", command=["sleep", "300"]))
    script = tmp_path / "nosy.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os
            from titan_runtime import TitanJob, task, PermissionDenied
            assert not os.environ["TITAN_TOKEN"].startswith({cluster.token[:8]!r})  # never the cluster token
            try:
                task.client().cancel({other!r})
                raise SystemExit("cancelled another run")
            except PermissionDenied as exc:
                print("refused:", exc)
            task.add_jobs([TitanJob("child", command=["echo", "added"])], after=task.current().job_id)
            """
        )
    )
    run = client.submit_dag("nosy", [TitanJob("nosy", str(script))])
    assert run.wait(60).state == "SUCCEEDED"
    assert "refused: a job of run" in client.fetch_logs(f"{run}/nosy")
    assert client.fetch_logs(f"{run}/child") == "added\n"
    assert client.get_job(other).state in ("ASSIGNED", "RUNNING")
    with pytest.raises(InvalidJob, match="dependency cycle"):
        client.add_jobs(
            other,
            [TitanJob("x", command=["true"], parents=["y"]), TitanJob("y", command=["true"], parents=["x"])],
        )
    client.cancel(other, wait=True)

    with pytest.raises(InvalidJob, match="has ended"):
        client.add_jobs(run, [TitanJob("late", command=["true"])])
    assert issubclass(PermissionDenied, Exception)


def test_agent_runs_group_runs(cluster: ProcessCluster) -> None:
    client = cluster.client
    first = client.submit_dag("step-1", [TitanJob("a", command=["true"])], agent_run_id="agent-7")
    second = client.submit_dag("step-2", [TitanJob("b", command=["false"])], agent_run_id="agent-7")
    client.submit_dag("alone", [TitanJob("c", command=["true"])])
    first.wait(30)
    second.wait(30)
    groups = json.loads(cluster.cli("agent-runs", "--json").stdout)
    assert [(g["id"], g["state"], [r["id"] for r in g["runs"]]) for g in groups] == [
        ("agent-7", "FAILED", [str(first), str(second)])
    ]


def test_saved_dags(cluster: ProcessCluster) -> None:
    client = cluster.client
    client.save_yaml("diamond", EXAMPLES / "diamond" / "diamond.yaml")
    assert client.list_saved_dags() == ["diamond"]
    run = client.submit_saved_dag("diamond", wait=True, timeout=60)
    assert run.status().state == "SUCCEEDED"
    assert client.get_result(f"{run}/sink") == 50
    client.delete_saved_dag("diamond")
    assert client.list_saved_dags() == []


def test_schedules_fire_once_per_time_across_a_master_restart(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    pipeline = tmp_path / "tick.yaml"
    pipeline.write_text("jobs:\n  - {id: tick, command: [echo, tick]}\n")
    out = cluster.cli("schedule", "add", "ticker", str(pipeline), "--cron", "* * * * * */2", "--seconds")
    assert out.returncode == 0, out.stderr
    client = cluster.client

    def scheduled() -> list:  # type: ignore[type-arg]
        return [r for r in client.list_runs() if r.labels.get("schedule") == "ticker"]

    wait_until(lambda: len(scheduled()) >= 2, 30, what="two scheduled runs")
    cluster.kill_master(signal.SIGKILL)
    cluster.start_master()
    cluster._client = None
    client = cluster.client
    before = len(scheduled())
    wait_until(lambda: len(scheduled()) >= before + 2, 30, what="the schedule to fire again after a restart")
    runs = scheduled()
    times = [r.labels["scheduled_for"] for r in runs]
    assert len(times) == len(set(times)), "a scheduled time fired twice"
    assert all(r.id.startswith("sched-ticker-") for r in runs)
    listed = json.loads(cluster.cli("schedule", "list", "--json").stdout)
    assert listed[0]["name"] == "ticker" and listed[0]["last_run_id"].startswith("sched-ticker-")
    assert listed[0]["seconds"] is True
    assert cluster.cli("schedule", "rm", "ticker").returncode == 0
    assert json.loads(cluster.cli("schedule", "list", "--json").stdout) == []


def test_a_schedule_that_cannot_be_added_saves_nothing_and_dags_are_managed_by_name(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    pipeline = tmp_path / "two.yaml"
    pipeline.write_text(
        "jobs:\n  - {id: a, command: [echo, a]}\n  - {id: b, command: [echo, b], depends_on: [a]}\n"
    )
    six = cluster.cli("schedule", "add", "every-second", str(pipeline), "--cron", "* * * * * *")
    assert six.returncode == 2 and "needs --seconds" in six.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("jobs:\n  - {id: a, command: [echo], depends_on: [nobody]}\n")
    bad = cluster.cli("schedule", "add", "nightly", str(broken), "--cron", "0 3 * * *")
    assert bad.returncode != 0 and "nobody" in bad.stderr
    assert cluster.client.list_saved_dags() == [] and cluster.client.list_schedules() == []

    assert cluster.cli("dags", "save", "two", str(pipeline)).returncode == 0
    assert json.loads(cluster.cli("dags", "list", "--json").stdout) == ["two"]
    shown = cluster.cli("dags", "show", "two").stdout.splitlines()
    assert shown[0].startswith("DAG two (saved ") and shown[0].endswith("2 job(s)")
    assert [line.split() for line in shown[2:]] == [["a", "echo", "a", "-"], ["b", "echo", "b", "a"]]
    assert [j["id"] for j in json.loads(cluster.cli("dags", "show", "two", "--json").stdout)["jobs"]] == [
        "a",
        "b",
    ]
    ran = cluster.cli("dags", "run", "two", "--wait")
    assert ran.returncode == 0, ran.stderr
    assert cluster.client.get_run(ran.stdout.strip()).state == "SUCCEEDED"
    assert cluster.cli("dags", "rm", "two").returncode == 0
    missing = cluster.cli("dags", "show", "two")
    assert missing.returncode == 1 and "no saved DAG 'two'" in missing.stderr
