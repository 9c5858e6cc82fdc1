"""Nothing a careless user or an attacker sends stops, corrupts or confuses the master (issue 18).

Each test is one failure seen in the field, driven through real processes; after each, the master
must still take writes, and a restart must find the same state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster, wait_until
from titan_runtime import InvalidJob, TitanJob

pytestmark = pytest.mark.integration


def still_takes_writes(cluster: ProcessCluster) -> None:
    job = cluster.client.submit_job(TitanJob(command=["true"]))
    assert cluster.client.wait(job, 60).state == "SUCCEEDED"


def result_job(job_id: str, value: object, **kw: object) -> TitanJob:
    text = json.dumps(json.dumps(value))
    return TitanJob(job_id, command=["sh", "-c", f"echo {text} > $TITAN_RESULT_FILE"], **kw)  # type: ignore[arg-type]


def test_a_condition_that_builds_a_huge_value_fails_its_job_not_the_master(cluster: ProcessCluster) -> None:
    # Built from constants, it is refused at submission, saying why.
    with pytest.raises(InvalidJob, match="condition budget"):
        cluster.client.submit_dag(
            "const",
            [
                TitanJob("p", command=["true"]),
                TitanJob("c", command=["true"], parents=["p"], when="'a' * 100000000000000000000 == ''"),
            ],
        )
    # Built from a result, after an approval gate times out (in the master's tick): the job fails.
    gate = result_job("gate", "xx", approval={"message": "ok?", "timeout": 1})
    after = TitanJob(
        "after",
        command=["true"],
        parents=["gate"],
        trigger_rule="all_done",
        when="gate * 100000 * 100000 != ''",
    )
    run = cluster.client.submit_dag("gated", [gate, after])
    record = run.wait(60)
    assert record.state == "FAILED"
    jobs = {j.id: j for j in record.jobs}
    assert jobs["gate"].reason.startswith("approval timed out")
    assert jobs["after"].state == "FAILED" and "condition budget" in jobs["after"].reason
    still_takes_writes(cluster)
    cluster.restart_master()
    cluster._client = None
    assert cluster.client.get_run(run.id).state == "FAILED"
    still_takes_writes(cluster)


def test_a_long_chain_whose_root_fails_settles_and_restarts(cluster: ProcessCluster) -> None:
    jobs = [TitanJob("j0", command=["false"])]
    jobs += [TitanJob(f"j{i}", command=["true"], parents=[f"j{i - 1}"]) for i in range(1, 1000)]
    run = cluster.client.submit_dag("chain", jobs)
    record = run.wait(120)
    assert record.state == "FAILED"
    assert record.counts == {"FAILED": 1, "UPSTREAM_FAILED": 999}
    cluster.restart_master()
    cluster._client = None
    assert cluster.client.get_run(run.id).counts == {"FAILED": 1, "UPSTREAM_FAILED": 999}
    still_takes_writes(cluster)


def test_a_second_master_on_the_same_data_dir_stops_at_once_and_touches_nothing(
    cluster: ProcessCluster,
) -> None:
    ready = (cluster.data_dir / "master.json").read_text()
    assert cluster.master is not None
    out = subprocess.run(
        [sys.executable, "-m", "titan_runtime", "master", "--port", "0", "--data-dir", str(cluster.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert (
        f"in use by another master (pid {cluster.master.pid}, listening on {cluster.address})" in out.stderr
    )
    assert (cluster.data_dir / "master.json").read_text() == ready
    up = subprocess.run(
        [sys.executable, "-m", "titan_runtime", "up", "--port", "0", "--data-dir", str(cluster.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert up.returncode != 0 and "in use by another master" in up.stderr
    assert [w.state for w in cluster.client.list_workers()] == ["ALIVE"]
    still_takes_writes(cluster)


def test_a_delayed_job_that_became_ready_is_ready_after_a_restart(make_cluster) -> None:
    # The fuzz suite met it: after a restart right after the delay ran out, the job was PENDING
    # again (the change was held for a lazy commit the stop dropped, and the restore started the
    # delay over).
    cluster = make_cluster()
    job = TitanJob("a", command=["true"], tags=["nobody-has-it"], delay=300)  # milliseconds
    run = cluster.client.submit_dag("d", [job])
    wait_until(lambda: cluster.client.get_run(run.id).jobs[0].state == "READY", interval=0.005)
    cluster.restart_master()
    cluster._client = None
    assert cluster.client.get_run(run.id).jobs[0].state == "READY"


@pytest.mark.parametrize("bad", ["ok\n", "ok\n\n", "\nok"])
def test_ids_with_a_newline_are_refused(cluster: ProcessCluster, bad: str) -> None:
    with pytest.raises(InvalidJob, match="invalid"):
        cluster.client.submit_job(TitanJob(command=["true"]), run_id=bad)
    with pytest.raises(InvalidJob, match="invalid job id"):
        cluster.client.submit_job(TitanJob(bad, command=["true"]))


def test_limits_are_refused_with_their_name_and_how_to_raise_them(make_cluster, tmp_path: Path) -> None:
    cluster: ProcessCluster = make_cluster(
        master_args=(
            "--limit",
            "jobs_per_run=5",
            "--limit",
            "kv_keys_per_run=3",
            "--limit",
            "artifact_bytes_per_run=4K",
        )
    )
    cluster.add_worker("w1", slots=2)
    with pytest.raises(
        InvalidJob, match=r"6 jobs.*jobs_per_run=5; raise it with `titan-runtime master --limit"
    ):
        cluster.client.submit_dag("big", [TitanJob(f"j{i}", command=["true"]) for i in range(6)])
    script = tmp_path / "greedy.py"
    script.write_text(
        "import sys\n"
        "from titan_runtime import task, ResourceExhausted\n"
        "for i in range(3):\n"
        "    task.store_put(f'k{i}', 'v')\n"
        "task.store_put('k0', 'again')  # an update creates nothing\n"
        "try:\n"
        "    task.store_put('k3', 'v')\n"
        "except ResourceExhausted as exc:\n"
        "    print('kv refused:', exc)\n"
        "open('blob', 'wb').write(b'x' * 5000)\n"
        "try:\n"
        "    task.publish_artifact('blob', 'blob')\n"
        "except ResourceExhausted as exc:\n"
        "    print('upload refused:', exc)\n"
    )
    job = cluster.client.submit_job(TitanJob(filename=str(script)))
    assert cluster.client.wait(job, 60).state == "SUCCEEDED"
    logs = cluster.client.fetch_logs(job)
    assert "kv refused:" in logs and "kv_keys_per_run=3" in logs
    assert "upload refused:" in logs and "artifact_bytes_per_run=4096" in logs
    # The cluster token is not a run: its keys are not counted.
    for i in range(5):
        cluster.client.store_put(f"admin{i}", "v")
    out = cluster.cli("master", "--limit", "nonsense=1", "--data-dir", str(tmp_path / "x"))
    assert out.returncode == 2 and "unknown limit 'nonsense'" in out.stderr


def test_ctrl_c_of_up_hands_each_running_job_back_once(tmp_path: Path) -> None:
    import signal
    import sqlite3

    from tests.helpers import wait_until
    from titan_runtime import TitanClient

    data = tmp_path / "data"
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "titan_runtime",
            "up",
            "--port",
            "0",
            "--workers",
            "2",
            "--slots",
            "1",
            "--data-dir",
            str(data),
            "--no-dashboard",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: (data / "master.json").exists(), 60, what="up to start")
        address = json.loads((data / "master.json").read_text())["address"]
        with TitanClient(address=address, data_dir=str(data)) as client:
            wait_until(lambda: len(client.list_workers()) == 2, 60, what="both workers")
            jobs = [client.submit_job(TitanJob(f"sleep{i}", command=["sleep", "60"])) for i in range(2)]
            wait_until(lambda: all(client.get_job(j).state == "RUNNING" for j in jobs), 60, what="both jobs")
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert up.returncode == 0, out
    db = sqlite3.connect(data / "titan.db")
    attempts = [json.loads(row) for (row,) in db.execute("SELECT data FROM attempts")]
    db.close()
    for job in jobs:
        mine = [a for a in attempts if a["run_id"] == job]
        started = [a for a in mine if not a.get("void")]
        assert len(started) == 1, mine  # handed back once; no attempt spent on a worker that was stopping
        assert len(mine) <= 3, mine
        assert started[0]["state"] == "CANCELLED" and "handed back" in started[0]["reason"]


def test_any_line_comes_back_whole_and_byte_for_byte(cluster: ProcessCluster, tmp_path: Path) -> None:
    """A 300 KB line, bytes that are not UTF-8 and an unended last line, through every way to read logs."""
    script = tmp_path / "noisy.py"
    script.write_text(
        "import sys\n"
        "out = sys.stdout.buffer\n"
        "out.write(b'x' * 300_000 + b'\\n')\n"
        "out.write(b'caf\\xe9 \\xff\\n')\n"
        "sys.stderr.write('err\\n')\n"
        "out.write(b'unended')\n"
    )
    job = cluster.client.submit_job(TitanJob(filename=str(script)))
    assert cluster.client.wait(job, 60).state == "SUCCEEDED"
    expected_out = b"x" * 300_000 + b"\ncaf\xe9 \xff\nunended"
    lines = cluster.client.read_logs(job)
    assert [len(line.data) for line in lines if line.stream == "stdout"] == [300_000, 6, 7]
    assert cluster.client.fetch_logs(job).startswith("x" * 300_000 + "\ncaf\ufffd \ufffd\n")
    assert b"".join(line.raw for line in lines if line.stream == "stdout") == expected_out
    for args in (("logs", job), ("logs", "--follow", job)):
        out = subprocess.run(
            [sys.executable, "-m", "titan_runtime", *args], capture_output=True, env=cluster.env(), timeout=60
        )
        assert out.returncode == 0 and out.stdout == expected_out + b"\n" and out.stderr == b"err\n", args
    raw = subprocess.run(
        [sys.executable, "-m", "titan_runtime", "logs", "--raw", job],
        capture_output=True,
        env=cluster.env(),
        timeout=60,
    )
    assert raw.stdout == expected_out


def test_a_project_that_unpacks_to_more_than_the_worker_allows_fails_its_job(
    make_cluster, tmp_path: Path
) -> None:
    """A 1 MB archive that unpacks to 1.1 GB: refused at its first header, nothing written."""
    import gzip
    import io
    import tarfile

    from titan_runtime.proto import titan_pb2 as pb

    class Zeros:
        def __init__(self, size: int) -> None:
            self.left = size

        def read(self, size: int = -1) -> bytes:
            size = self.left if size < 0 else min(size, self.left)
            self.left -= size
            return bytes(size)

    bomb = tmp_path / "bomb.tar.gz"
    with (
        open(bomb, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        main = tarfile.TarInfo("main.py")
        main.size = 12
        tar.addfile(main, io.BytesIO(b"print('hi')\n"))
        zeros = tarfile.TarInfo("zeros")
        zeros.size = 1100 * 1024 * 1024
        tar.addfile(zeros, Zeros(zeros.size))
    assert bomb.stat().st_size < 2 * 1024 * 1024
    cluster: ProcessCluster = make_cluster()
    cluster.add_worker("w1", slots=1, args=("--max-project-size", "100M"))
    client = cluster.client
    archive = client.upload_file(bomb)
    spec = pb.JobSpec(id="bomb", project_hash=archive, script_name="main.py")
    response = client._rpc("SubmitRun")[0](
        pb.SubmitRunRequest(name="bomb", jobs=[spec]), metadata=client._metadata
    )
    record = client.wait(response.run_id, 60)
    assert record.state == "FAILED"
    assert "unpacks to more than 100.0 MiB" in record.reason and "--max-project-size" in record.reason
    workspaces = cluster.root / "workers" / "w1" / "work"
    assert sum(f.stat().st_size for f in workspaces.rglob("*") if f.is_file()) < 1024 * 1024


def test_a_master_starts_on_a_store_with_a_record_it_cannot_read(make_cluster) -> None:
    """The damaged job fails, saying why; the others are restored and run; the master takes writes."""
    import sqlite3

    cluster: ProcessCluster = make_cluster()
    run = cluster.client.submit_dag(
        "damaged",
        [TitanJob("bad", command=["true"]), TitanJob("after", command=["true"], parents=["bad"]),
         TitanJob("fine", command=["true"])],
    )  # fmt: skip
    cluster.kill_master()
    db = sqlite3.connect(cluster.data_dir / "titan.db")
    db.execute('UPDATE jobs SET spec=\'{"id": "bad", "retries": {"nonsense": 1}}\' WHERE job_id=\'bad\'')
    db.commit()
    db.close()
    cluster.start_master()
    cluster._client = None
    cluster.add_worker("w1", slots=2)
    record = cluster.client.wait_run(run.id, 60)
    jobs = {j.id: j for j in record.jobs}
    assert jobs["bad"].state == "FAILED" and "its stored record could not be read" in jobs["bad"].reason
    assert jobs["after"].state == "UPSTREAM_FAILED" and jobs["fine"].state == "SUCCEEDED"
    assert "job " + run.id + "/bad: its stored record could not be read" in cluster.master_log()
    still_takes_writes(cluster)
