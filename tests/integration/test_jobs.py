"""Jobs end to end on real master and worker processes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.helpers import ProcessCluster, pid_alive, wait_until
from titan_runtime import InvalidJob, TitanClient, TitanJob, Unauthenticated

pytestmark = pytest.mark.integration


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_script_output_arrives_in_order_with_streams(cluster: ProcessCluster, tmp_path: Path) -> None:
    script = write(
        tmp_path / "count.py",
        """
        import sys
        for i in range(200):
            print(f"line {i}")
            if i % 50 == 0:
                print(f"err {i}", file=sys.stderr)
        """,
    )
    client = cluster.client
    job_id = client.submit_job(TitanJob(filename=str(script)))
    record = client.wait(job_id, timeout=30)
    assert record.state == "SUCCEEDED", record.reason
    lines = client.read_logs(job_id)
    out = [str(line) for line in lines if line.stream == "stdout"]
    err = [str(line) for line in lines if line.stream == "stderr"]
    assert out == [f"line {i}" for i in range(200)]
    assert err == [f"err {i}" for i in range(0, 200, 50)]
    assert client.fetch_logs(job_id).splitlines()[:2] == ["line 0", "err 0"] or "line 0" in client.fetch_logs(
        job_id
    )


def test_command_with_args_env_and_exit_code(cluster: ProcessCluster) -> None:
    client = cluster.client
    job_id = client.submit_job(
        TitanJob(
            command=["bash", "-c", 'echo "$GREETING $0 $1"; exit 7', "x", "y"], env={"GREETING": "héllo"}
        )
    )
    record = client.wait(job_id, timeout=30)
    assert record.state == "FAILED"
    assert record.exit_code == 7
    assert record.reason == "exit code 7"
    assert client.fetch_logs(job_id) == "héllo x y\n"


def test_follow_logs_streams_lines_while_the_job_runs(cluster: ProcessCluster, tmp_path: Path) -> None:
    """The first line must arrive while the job is still running, not at the end."""
    gate = tmp_path / "gate"
    script = write(
        tmp_path / "slow.py",
        f"""
        import os, time
        print("first", flush=True)
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.01)
        print("second")
        """,
    )
    client = cluster.client
    job_id = client.submit_job(TitanJob(filename=str(script)))
    lines = client.follow_logs(job_id)
    assert next(lines) == "first"
    assert client.get_job(job_id).state == "RUNNING"
    gate.touch()
    assert [str(line) for line in lines] == ["second"]
    assert client.wait(job_id, 30).state == "SUCCEEDED"


def test_timeout_kills_grandchildren(cluster: ProcessCluster, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    client = cluster.client
    job_id = client.submit_job(
        TitanJob(command=["bash", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], timeout=1.0)
    )
    record = client.wait(job_id, timeout=60)
    assert record.state == "FAILED"
    assert record.reason.startswith("timed out after 1s")
    grandchild = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(grandchild), 10, what="the grandchild to die")


def test_cancel_kills_the_process_tree(cluster: ProcessCluster, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    client = cluster.client
    job_id = client.submit_job(TitanJob(command=["bash", "-c", f"sleep 300 & echo $$ $! > {pidfile}; wait"]))
    wait_until(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2, what="the job to start")
    pids = [int(p) for p in pidfile.read_text().split()]
    assert client.cancel(job_id, wait=True) == [client.get_job(job_id).ref]
    assert client.get_job(job_id).state == "CANCELLED"
    for pid in pids:
        assert not pid_alive(pid)


def test_gpu_job_waits_for_a_gpu_worker_while_untagged_jobs_run(make_cluster, tmp_path: Path) -> None:
    cluster = make_cluster()
    cluster.add_worker("cpu", slots=1)
    client = cluster.client
    gpu_job = client.submit_job(
        TitanJob(job_id="train", command=["hostname"], requirement="GPU", priority=10)
    )
    plain = client.submit_job(TitanJob(job_id="plain", command=["true"]))
    assert client.wait(plain, 30).state == "SUCCEEDED"
    waiting = client.get_job(gpu_job)
    assert waiting.state == "READY"
    assert waiting.reason == "waiting for a worker with tags {GPU}"
    cluster.add_worker("gpu", tags=["GPU"], slots=1)
    record = client.wait(gpu_job, 30)
    assert record.state == "SUCCEEDED"
    assert record.worker_name == "gpu"


def test_priority_orders_jobs_on_a_single_slot(make_cluster, tmp_path: Path) -> None:
    cluster = make_cluster()
    client = cluster.client
    gate = tmp_path / "gate"
    order = tmp_path / "order"
    blocker = client.submit_job(
        TitanJob(job_id="blocker", command=["bash", "-c", f"while [ ! -e {gate} ]; do sleep 0.01; done"])
    )
    ids = []
    for name, priority in [("low", 1), ("high", 10), ("mid", 5), ("high2", 10)]:
        ids.append(
            client.submit_job(
                TitanJob(job_id=name, command=["bash", "-c", f"echo {name} >> {order}"], priority=priority)
            )
        )
    cluster.add_worker("single", slots=1)
    wait_until(lambda: client.get_job(blocker).state == "RUNNING", what="the blocker to run")
    gate.touch()
    for job_id in ids:
        assert client.wait(job_id, 30).state == "SUCCEEDED"
    assert order.read_text().split() == ["high", "high2", "mid", "low"]


def test_kv_is_utf8_safe_and_sadd_reports_new_members(cluster: ProcessCluster) -> None:
    client = cluster.client
    client.store_put("città/ключ", "värde, 值 🚀")
    assert client.store_get("città/ключ") == "värde, 值 🚀"
    assert client.store_sadd("set", "a,b") is True
    assert client.store_sadd("set", "a,b") is False
    assert client.store_sadd("set", "ü") == 1
    assert client.store_smembers("set") == {"a,b", "ü"}
    assert client.store_srem("set", "a,b") is True
    assert client.store_smembers("set") == {"ü"}
    assert client.store_incr("n") == 1
    assert client.store_incr("n", 41) == 42
    assert client.store_cas("n", "42", "43") is True
    assert client.store_cas("n", "42", "44") is False
    assert client.store_get("n") == "43"
    assert client.store_get("missing") is None
    with pytest.raises(InvalidJob, match="over the KV limit of 1 MB"):
        client.store_put("big", "x" * (1024 * 1024 + 1))


def test_jobs_share_values_through_kv(cluster: ProcessCluster, tmp_path: Path) -> None:
    producer = write(
        tmp_path / "producer.py",
        """
        from titan_runtime import task
        task.store_put("handoff", "from producer")
        task.store_sadd("seen", task.current().job_id)
        """,
    )
    client = cluster.client
    assert client.wait(client.submit_job(TitanJob(filename=str(producer))), 30).state == "SUCCEEDED"
    assert client.store_get("handoff") == "from producer"
    assert client.store_smembers("seen") == {"producer"}


def test_result_round_trip(cluster: ProcessCluster, tmp_path: Path) -> None:
    script = write(
        tmp_path / "res.py",
        """
        from titan_runtime import task
        task.set_result({"total": 42, "name": "ü"})
        """,
    )
    client = cluster.client
    job_id = client.submit_job(TitanJob(filename=str(script)))
    assert client.wait(job_id, 30).state == "SUCCEEDED"
    assert client.get_result(job_id) == {"total": 42, "name": "ü"}


def test_wrong_token_is_rejected_with_the_token_location(cluster: ProcessCluster) -> None:
    bad = TitanClient(address=cluster.address, token="not-the-token")
    with pytest.raises(Unauthenticated, match=r"wrong token: the cluster token is in .*master/token"):
        bad.list_workers()
    bad.close()


def test_script_is_fetched_once_per_worker(cluster: ProcessCluster, tmp_path: Path) -> None:
    script = write(tmp_path / "noop.py", "pass\n")
    client = cluster.client
    ids = [client.submit_job(TitanJob(filename=str(script))) for _ in range(5)]
    for job_id in ids:
        assert client.wait(job_id, 30).state == "SUCCEEDED"
    cache = cluster.root / "workers" / "w1" / "cache"
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 1


def test_large_output_completes_and_is_whole(cluster: ProcessCluster, tmp_path: Path) -> None:
    script = write(
        tmp_path / "big.py",
        """
        import sys
        line = "x" * 99 + "\\n"
        block = line * 10000
        for _ in range(100):
            sys.stdout.write(block)
        """,
    )
    client = cluster.client
    job_id = client.submit_job(TitanJob(filename=str(script)))
    record = client.wait(job_id, 120)
    assert record.state == "SUCCEEDED", record.reason
    count = 0
    for line in client.follow_logs(job_id):
        assert len(line) == 99
        count += 1
    assert count == 1_000_000
    # Neither the master nor the worker held the log in memory (peak RSS well under its 118 MB).
    for pid in (cluster.master.pid, cluster.workers["w1"].pid):
        assert peak_rss_mb(pid) < 100, (pid, peak_rss_mb(pid))


def test_result_too_large_fails_with_a_clear_reason(cluster: ProcessCluster, tmp_path: Path) -> None:
    script = write(
        tmp_path / "huge.py",
        """
        import json, os
        with open(os.environ["TITAN_RESULT_FILE"], "w") as fh:
            json.dump("x" * (2 * 1024 * 1024), fh)
        """,
    )
    client = cluster.client
    job_id = client.submit_job(TitanJob(filename=str(script)))
    record = client.wait(job_id, 30)
    assert record.state == "FAILED"
    assert "over the 1 MB limit" in record.reason
    assert json.dumps(record.to_dict())


def test_python_placeholder_is_the_workers_interpreter(cluster: ProcessCluster) -> None:
    client = cluster.client
    job_id = client.submit_job(
        TitanJob(command=["{python}", "-c", "import sys, titan_runtime; print(sys.executable)"])
    )
    assert client.wait(job_id, 30).state == "SUCCEEDED"
    import sys

    assert client.fetch_logs(job_id).strip() == sys.executable


def test_workspaces_and_spool_files_are_removed_after_each_job(cluster: ProcessCluster) -> None:
    """A workspace of a few files is removed inline, a tree by a thread; a job's spool and result files
    go once the master has its log and result. Nothing piles up on a worker that runs many jobs."""
    client = cluster.client
    jobs = [
        TitanJob(job_id="silent", command=["true"]),
        TitanJob(
            job_id="messy",
            command=[
                "bash",
                "-c",
                'mkdir -p a/b && echo x > a/b/f && echo \'{"n": 1}\' > "$TITAN_RESULT_FILE"',
            ],
        ),
        TitanJob(job_id="chatty", command=["bash", "-c", "echo out; echo err >&2"]),
    ]
    run = client.submit_dag("cleanup", jobs)
    assert run.wait(30).state == "SUCCEEDED"
    assert run.results()["messy"] == {"n": 1}
    assert "out" in client.fetch_logs(f"{run.id}/chatty")
    worker_dir = cluster.root / "workers" / "w1"

    def leftovers() -> list[str]:
        return sorted(
            str(p.relative_to(worker_dir)) for d in ("work", "spool") for p in (worker_dir / d).iterdir()
        )

    wait_until(lambda: not leftovers(), what="workspaces and spool files to be removed")


@pytest.mark.parametrize("launcher", ["fork", "exec"])
def test_python_scripts_start_by_the_chosen_launcher_and_time_out_with_their_tree(
    make_cluster, tmp_path: Path, launcher: str
) -> None:
    """fork (the default): a .py job is a child of the worker's launcher; exec: of the worker itself.
    Either way a timeout takes the job's grandchild with it, and the cluster token is in neither the
    job's environment block nor its parent's (the launcher, or the worker: it read the token from a
    pipe)."""
    cluster = make_cluster()
    args = () if launcher == "fork" else ("--python-launcher", "exec")
    worker = cluster.add_worker("w", slots=1, args=args)
    script = write(
        tmp_path / "job.py",
        """\
        import os, pathlib, subprocess, sys, time
        out = pathlib.Path(sys.argv[2])
        out.joinpath("self").write_bytes(pathlib.Path("/proc/self/environ").read_bytes())
        out.joinpath("parent").write_bytes(pathlib.Path(f"/proc/{os.getppid()}/environ").read_bytes())
        child = subprocess.Popen(["sleep", "300"])
        print(os.getppid(), child.pid, flush=True)
        if sys.argv[1] == "hang":
            time.sleep(300)
        """,
    )
    client = cluster.client
    environs = tmp_path / "environ"
    environs.mkdir()
    quick = client.submit_job(TitanJob(filename=str(script), args=["quick", str(environs)]))
    assert client.wait(quick, 30).state == "SUCCEEDED"
    parent, grandchild = (int(v) for v in client.fetch_logs(quick).split())
    token = cluster.token.encode()
    assert token not in (environs / "self").read_bytes()
    assert token not in (environs / "parent").read_bytes()
    assert b"TITAN_TEST_MARK=" in (environs / "parent").read_bytes()  # the check reads what is there
    if launcher == "fork":
        assert parent != worker.pid and psutil.Process(parent).ppid() == worker.pid
    else:
        assert parent == worker.pid
    wait_until(lambda: not pid_alive(grandchild), 10, what="the grandchild of a job that ended to die")
    hung = client.submit_job(TitanJob(filename=str(script), args=["hang", str(environs)], timeout=1.0))
    record = client.wait(hung, 60)
    assert record.state == "FAILED" and record.reason.startswith("timed out after 1s")
    grandchild = int(client.fetch_logs(hung).split()[1])
    wait_until(lambda: not pid_alive(grandchild), 10, what="the grandchild of a timed-out job to die")


def test_a_cancel_may_say_why_within_a_budget(cluster: ProcessCluster) -> None:
    from titan_runtime import TitanError

    client = cluster.client
    run = client.submit_dag("why", [TitanJob("sleep", command=["sleep", "300"])])
    wait_until(lambda: client.get_job(f"{run}/sleep").state == "RUNNING", what="the job to run")
    with pytest.raises(TitanError, match="a cancel reason is at most 500 characters, not 501"):
        client.cancel(run, reason="x" * 501)
    assert client.get_job(f"{run}/sleep").state == "RUNNING"
    client.cancel(run, wait=True, reason="replaced by the nightly run")
    job = client.get_job(f"{run}/sleep")
    assert (job.state, job.reason) == ("CANCELLED", "replaced by the nightly run")
    other = client.submit_dag("plain", [TitanJob("sleep", command=["sleep", "300"])])
    client.cancel(other, wait=True)
    assert client.get_job(f"{other}/sleep").reason == "cancelled by user"


def test_module_jobs_of_preloaded_packages_start_from_the_preloading_launcher(
    make_cluster, tmp_path: Path
) -> None:
    """`worker --preload timeit,email.parser`: a `{python} -m timeit` job is forked from a launcher
    that has imported them (it finds email.parser imported already); a script job is forked from
    the plain launcher (it does not), a `-c` job is exec'd. A bad name is refused at the start."""
    cluster = make_cluster()
    worker = cluster.add_worker("w", slots=1, args=("--preload", "timeit,email.parser"))
    client = cluster.client
    probe = "import os, sys; print('email.parser' in sys.modules, os.getppid())"
    script = tmp_path / "probe.py"
    script.write_text(probe + "\n")

    def ran(job: TitanJob) -> tuple[str, int]:
        ref = client.submit_job(job)
        assert client.wait(ref, 30).state == "SUCCEEDED", client.fetch_logs(ref)
        preloaded, parent = client.fetch_logs(ref).split()[:2]
        return preloaded, int(parent)

    warm, warm_parent = ran(TitanJob(command=["{python}", "-m", "timeit", "-n1", "-r1", probe]))
    plain, plain_parent = ran(TitanJob(filename=str(script)))
    execd, execd_parent = ran(TitanJob(command=["{python}", "-c", probe]))
    assert (warm, plain, execd) == ("True", "False", "False")
    launchers = {p.pid for p in psutil.Process(worker.pid).children()}
    assert {warm_parent, plain_parent} <= launchers and warm_parent != plain_parent
    assert execd_parent == worker.pid
    # A job may ask for packages itself: a launcher for them is started on its first asking.
    asked, asked_parent = ran(TitanJob(filename=str(script), preload=["email.parser"]))
    assert asked == "True" and asked_parent not in (warm_parent, plain_parent)
    assert psutil.Process(asked_parent).ppid() == worker.pid
    with pytest.raises(InvalidJob, match="preload takes at most 16 module names"):
        client.submit_job(TitanJob(filename=str(script), preload=["not a module"]))
    refused = cluster.cli("worker", "--preload", "dagster,not a module", "--name", "x")
    assert refused.returncode == 2 and "'not a module': not module names" in refused.stderr
