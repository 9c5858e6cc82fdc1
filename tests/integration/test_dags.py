"""DAG semantics end to end: runs, retries, upstream failures, cancellation, artifacts, projects."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster, pid_alive, wait_until
from titan_runtime import InvalidJob, TitanJob
from titan_runtime.client.project import ProjectTooLarge

pytestmark = pytest.mark.integration


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_failure_marks_descendants_and_run_wait_returns_at_once(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    yaml = write(
        tmp_path / "p.yaml",
        """
        name: failing
        jobs:
          - {id: a, command: [sh, -c, "echo boom >&2; exit 4"]}
          - {id: b, command: ["true"], depends_on: [a]}
          - {id: c, command: ["true"], depends_on: [b]}
          - {id: ok, command: ["true"]}
        """,
    )
    run = cluster.client.submit_yaml(yaml, wait=True, timeout=60)
    record = run.status()
    assert record.state == "FAILED"
    assert record.reason == "job a failed: exit code 4"
    states = {j.id: j.state for j in record.jobs}
    assert states == {"a": "FAILED", "b": "UPSTREAM_FAILED", "c": "UPSTREAM_FAILED", "ok": "SUCCEEDED"}
    assert all(not j.attempts for j in record.jobs if j.id in ("b", "c"))
    out = cluster.cli("run", "--wait", str(yaml))
    assert out.returncode == 1
    assert "job a failed: exit code 4" in out.stderr


def test_retries_get_their_own_attempt_logs(cluster: ProcessCluster, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    script = write(
        tmp_path / "flaky.py",
        f"""
        import os, sys
        from pathlib import Path
        p = Path({str(counter)!r})
        n = int(p.read_text()) + 1 if p.exists() else 1
        p.write_text(str(n))
        print(f"attempt {{n}} env {{os.environ['TITAN_ATTEMPT']}}")
        sys.exit(0 if n == 3 else 1)
        """,
    )
    client = cluster.client
    job_id = client.submit_job(
        TitanJob(filename=str(script), retries={"attempts": 3, "backoff": {"initial": 0.1, "factor": 2}})
    )
    record = client.wait(job_id, 60)
    assert record.state == "SUCCEEDED" and record.attempt == 3
    assert [a.state for a in record.attempts] == ["FAILED", "FAILED", "SUCCEEDED"]
    for n in (1, 2, 3):
        assert client.fetch_logs(job_id, attempt=n) == f"attempt {n} env {n}\n"
        assert cluster.cli("logs", job_id, "--attempt", str(n)).stdout == f"attempt {n} env {n}\n"
    gap = record.attempts[2].started_at - record.attempts[1].ended_at
    assert gap >= 0.2 - 0.05  # second backoff: 0.1 * 2


def test_cancel_run_kills_running_processes_and_cancels_the_rest(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    client = cluster.client
    run = client.submit_dag(
        "long",
        [
            TitanJob("sleeper", command=["bash", "-c", f"echo $$ > {pidfile}; exec sleep 300"]),
            TitanJob("after", command=["true"], parents=["sleeper"]),
        ],
    )
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the sleeper to start")
    pid = int(pidfile.read_text())
    assert sorted(run.cancel()) == [f"{run}/after", f"{run}/sleeper"]
    assert not pid_alive(pid)
    record = run.status()
    assert record.state == "CANCELLED"
    assert {j.state for j in record.jobs} == {"CANCELLED"}


def test_two_runs_of_the_same_dag_never_interact(cluster: ProcessCluster, tmp_path: Path) -> None:
    script = write(
        tmp_path / "id.py", "from titan_runtime import task\ntask.set_result(task.current().run_id)\n"
    )
    jobs = lambda: [TitanJob("a", str(script)), TitanJob("b", str(script), parents=["a"])]  # noqa: E731
    client = cluster.client
    first, second = client.submit_dag("same", jobs()), client.submit_dag("same", jobs())
    assert first != second
    for run in (first, second):
        assert run.wait(60).state == "SUCCEEDED"
        assert run.results() == {"a": str(run), "b": str(run)}


def test_idempotent_submission_on_a_given_run_id(cluster: ProcessCluster) -> None:
    client = cluster.client
    first = client.submit_job(TitanJob("x", command=["true"]), run_id="dagster-run-1-step-a-1")
    again = client.submit_job(TitanJob("x", command=["true"]), run_id="dagster-run-1-step-a-1")
    assert first == again == "dagster-run-1-step-a-1"
    assert len(client.list_runs()) == 1
    with pytest.raises(InvalidJob, match="already exists with other jobs"):
        client.submit_job(TitanJob("x", command=["false"]), run_id="dagster-run-1-step-a-1")


def test_artifacts_travel_between_jobs_and_to_clients(cluster: ProcessCluster, tmp_path: Path) -> None:
    producer = write(
        tmp_path / "produce.py",
        """
        from pathlib import Path
        from titan_runtime import task
        Path("out.bin").write_bytes(bytes(range(256)) * 1000)
        task.publish_artifact("data/out.bin", "out.bin")
        """,
    )
    consumer = write(
        tmp_path / "consume.py",
        """
        from titan_runtime import task
        data = task.get_artifact("data/out.bin", "in.bin").read_bytes()
        task.set_result(len(data))
        """,
    )
    client = cluster.client
    run = client.submit_dag(
        "art", [TitanJob("p", str(producer)), TitanJob("c", str(consumer), parents=["p"])]
    )
    assert run.wait(60).state == "SUCCEEDED"
    assert run.results() == {"c": 256000}
    saved = client.get_artifact("data/out.bin", tmp_path / "here.bin", run_id=run)
    assert saved.read_bytes() == bytes(range(256)) * 1000
    # The cluster namespace (the original's publish_artifact/get_artifact).
    src = tmp_path / "model.txt"
    src.write_text("weights ü")
    client.publish_artifact("model", src)
    assert client.fetch_artifact("model", tmp_path / "copy.txt").read_text() == "weights ü"
    with pytest.raises(Exception, match="no artifact named 'nope'"):
        client.get_artifact("nope", tmp_path / "x")
    # Listed: a run's names (what its jobs published), and the cluster's, apart.
    (listed,) = client.list_artifacts(str(run))
    assert (listed.name, listed.run_id, listed.size) == ("data/out.bin", str(run), 256000)
    assert [a.name for a in client.list_artifacts()] == ["model"]
    assert client.list_artifacts("r-none") == []


def test_project_folder_ships_modules_and_excludes_junk(cluster: ProcessCluster, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    write(project / "pkg" / "__init__.py", "")
    write(project / "pkg" / "helper.py", "def hello():\n    return 'hello from pkg'\n")
    write(
        project / "main.py",
        """
        import os, sys
        sys.path.insert(0, os.getcwd())
        from pkg.helper import hello
        print(hello(), sys.argv[1:], sorted(os.listdir(".")))
        """,
    )
    write(project / ".git" / "HEAD", "ref: refs/heads/main\n")
    write(project / ".venv" / "pyvenv.cfg", "home = /usr\n")
    write(
        project / "pipeline.yaml",
        "project: true\njobs:\n  - {id: main, file: main.py, args: '--flag value'}\n",
    )
    run = cluster.client.submit_yaml(project / "pipeline.yaml", wait=True, timeout=60)
    assert run.status().state == "SUCCEEDED"
    assert cluster.client.fetch_logs(f"{run}/main") == (
        "hello from pkg ['--flag', 'value'] ['main.py', 'pipeline.yaml', 'pkg']\n"
    )


def test_project_over_the_size_limit_is_refused_clearly(cluster: ProcessCluster, tmp_path: Path) -> None:
    from titan_runtime.client import project as project_module

    folder = tmp_path / "big"
    write(folder / "main.py", "print(1)\n")
    (folder / "blob.bin").write_bytes(b"x" * 4096)
    with pytest.raises(ProjectTooLarge, match="over the 0 MB limit"):
        project_module.project_files(folder, limit=1024)


def test_run_status_json_and_validate(cluster: ProcessCluster, tmp_path: Path) -> None:
    yaml = write(
        tmp_path / "p.yaml",
        """
        name: tiny
        jobs:
          - {id: a, command: ["true"]}
          - {id: b, command: ["true"], depends_on: [a]}
        """,
    )
    assert cluster.cli("validate", str(yaml)).stdout.strip().endswith("ok, pipeline 'tiny' with 2 job(s)")
    out = cluster.cli("run", "--wait", "--name", "renamed", "--label", "team=data", str(yaml))
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.splitlines()[0]
    assert "b SUCCEEDED" in out.stdout  # plain progress lines when not a terminal
    status = json.loads(cluster.cli("run-status", run_id, "--json").stdout)
    assert (status["id"], status["name"], status["state"], status["labels"]) == (
        run_id,
        "renamed",
        "SUCCEEDED",
        {"team": "data"},
    )
    jobs = {j["id"]: j for j in status["jobs"]}
    assert jobs["b"]["parents"] == ["a"] and jobs["b"]["state"] == "SUCCEEDED" and "worker_id" in jobs["b"]
    assert cluster.cli("status", f"{run_id}/b", "--json").returncode == 0
    bad = write(tmp_path / "bad.yaml", "jobs:\n  - {id: a, command: [x], depnds_on: [a]}\n")
    out = cluster.cli("validate", str(bad))
    assert out.returncode == 1
    assert "bad.yaml:2: job 'a': unknown key 'depnds_on' (did you mean 'depends_on'?)" in out.stderr
    assert cluster.cli("run", str(bad)).returncode == 1
    assert len(json.loads(cluster.cli("runs", "--json").stdout)) == 1  # nothing of the bad file was submitted


def test_run_follow_prints_every_jobs_output(cluster: ProcessCluster, tmp_path: Path) -> None:
    yaml = write(
        tmp_path / "p.yaml",
        """
        jobs:
          - {id: one, command: [echo, "from one"]}
          - {id: two, command: [echo, "from two"], depends_on: [one]}
        """,
    )
    out = cluster.cli("run", "--follow", str(yaml))
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[one] from one\n[two] from two\n"
