"""The worst day: workers killed or silenced, the master killed, workers drained.

Real processes only; every failure is a real signal to a real pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster, pid_alive, wait_until
from titan_runtime import TitanJob

pytestmark = pytest.mark.integration

FAST_LEASE = ("--heartbeat-interval", "0.25", "--lease-timeout", "1.5")


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def first_attempt_hangs(tmp_path: Path) -> Path:
    """A job whose first attempt records its pid (and its child's) and hangs; later attempts succeed."""
    return write(
        tmp_path / "hang_once.py",
        f"""
        import os, subprocess, sys, time
        from titan_runtime import task
        attempt = int(os.environ["TITAN_ATTEMPT"])
        if attempt == 1:
            child = subprocess.Popen(["sleep", "300"])
            with open({str(tmp_path / "pids")!r}, "w") as fh:
                fh.write(f"{{os.getpid()}} {{child.pid}}")
            time.sleep(300)
        task.set_result({{"attempt": attempt, "worker": os.environ["TITAN_WORKER_NAME"]}})
        """,
    )


def pids(tmp_path: Path) -> list[int]:
    path = tmp_path / "pids"
    wait_until(
        lambda: path.exists() and len(path.read_text().split()) == 2, what="the job to record its pids"
    )
    return [int(p) for p in path.read_text().split()]


def test_worker_killed_its_jobs_die_and_run_elsewhere(make_cluster, tmp_path: Path) -> None:
    cluster = make_cluster()
    cluster.add_worker("doomed", slots=1)
    client = cluster.client
    job_id = client.submit_job(TitanJob(filename=str(first_attempt_hangs(tmp_path))))
    job_pids = pids(tmp_path)
    cluster.add_worker("survivor", slots=1)
    cluster.workers["doomed"].kill()  # SIGKILL: no chance to clean up
    cluster.workers.pop("doomed").wait()
    for pid in job_pids:  # the reaper took the job's process group with the worker
        wait_until(lambda pid=pid: not pid_alive(pid), 10, what=f"job process {pid} to die")
    record = client.wait(job_id, 60)
    assert record.state == "SUCCEEDED"
    assert client.get_result(job_id) == {"attempt": 2, "worker": "survivor"}
    lost, won = record.attempts
    assert lost.state == "LOST" and lost.reason == "lost: worker doomed disconnected"
    assert won.state == "SUCCEEDED" and won.worker_id != lost.worker_id
    doomed = [w for w in client.list_workers() if w.name == "doomed"]
    assert [w.state for w in doomed] == ["DEAD"]


def test_silent_worker_loses_its_lease_and_its_late_result_is_rejected(make_cluster, tmp_path: Path) -> None:
    cluster = make_cluster(master_args=FAST_LEASE)
    cluster.add_worker("frozen", slots=1)
    client = cluster.client
    gate = tmp_path / "gate"
    marker = tmp_path / "ran"
    script = write(
        tmp_path / "job.py",
        f"""
        import os, time
        from pathlib import Path
        with open({str(marker)!r}, "a") as fh:
            fh.write(os.environ["TITAN_WORKER_NAME"] + "\\n")
        if os.environ["TITAN_WORKER_NAME"] == "frozen":
            while not Path({str(gate)!r}).exists():
                time.sleep(0.02)
        """,
    )
    job_id = client.submit_job(TitanJob(filename=str(script)))
    wait_until(lambda: marker.exists(), what="the first attempt to start")
    frozen = cluster.workers["frozen"]
    frozen.send_signal(signal.SIGSTOP)  # alive, connected, silent: only the lease can tell
    try:
        cluster.add_worker("healthy", slots=1)
        record = client.wait(job_id, 60)
        assert record.state == "SUCCEEDED"
        assert record.attempts[0].state == "LOST"
        assert "no heartbeat" in record.attempts[0].reason
        assert record.worker_name == "healthy"
        gate.touch()  # the stale attempt now finishes too...
    finally:
        frozen.send_signal(signal.SIGCONT)
    # ...and its worker comes back: its late result is rejected, it registers again cleanly.
    wait_until(
        lambda: any(w.name == "frozen" and w.state == "ALIVE" for w in client.list_workers()),
        what="the frozen worker to register again",
    )
    wait_until(
        lambda: "rejected" in cluster.master_log() or "superseded" in cluster.master_log(),
        what="the rejection",
    )
    record = client.get_job(job_id)
    assert [a.state for a in record.attempts] == ["LOST", "SUCCEEDED"]
    assert record.worker_name == "healthy"
    assert sorted(marker.read_text().split()) == ["frozen", "healthy"]


def test_master_killed_and_restarted_loses_nothing_and_runs_nothing_twice(
    make_cluster, tmp_path: Path
) -> None:
    cluster = make_cluster()
    cluster.add_worker("w1", slots=2)
    client = cluster.client
    ledger = tmp_path / "ledger"
    gate = tmp_path / "gate"
    step = write(
        tmp_path / "step.py",
        f"""
        import os, sys, time
        from pathlib import Path
        name = os.environ["TITAN_JOB_ID"]
        with open({str(ledger)!r}, "a") as fh:
            fh.write(f"start {{name}}\\n")
        if name in ("slow", "done_while_down"):
            while not Path({str(gate)!r}).exists():
                time.sleep(0.02)
        with open({str(ledger)!r}, "a") as fh:
            fh.write(f"end {{name}}\\n")
        """,
    )
    jobs = [
        TitanJob("slow", str(step)),
        TitanJob("done_while_down", str(step)),
        TitanJob("child", str(step), parents=["slow", "done_while_down"]),
        TitanJob("grandchild", str(step), parents=["child"]),
    ]
    run = client.submit_dag("survivor", jobs)
    wait_until(lambda: ledger.exists() and ledger.read_text().count("start") == 2, what="both roots to start")
    cluster.kill_master(signal.SIGKILL)
    gate.touch()  # both roots finish while there is no master
    wait_until(lambda: ledger.read_text().count("end") == 2, what="the roots to finish without a master")
    cluster.start_master()  # same data dir, same port; the worker reconnects by itself
    cluster._client = None
    record = cluster.client.wait_run(run, 60)
    assert record.state == "SUCCEEDED", record.reason
    lines = ledger.read_text().split("\n")
    for name in ("slow", "done_while_down", "child", "grandchild"):
        assert lines.count(f"start {name}") == 1, ledger.read_text()
    jobs_by_id = {j.id: j for j in record.jobs}
    assert all(len(j.attempts) == 1 for j in jobs_by_id.values())
    assert jobs_by_id["child"].started_at >= max(
        jobs_by_id["slow"].ended_at, jobs_by_id["done_while_down"].ended_at
    )
    assert jobs_by_id["grandchild"].started_at >= jobs_by_id["child"].ended_at


def test_output_of_a_run_that_ended_while_the_master_was_down_is_kept(make_cluster, tmp_path: Path) -> None:
    """The worker's hello says the job ended, which ends its run, and the run leaves the master's
    memory at once: the output the worker resends after that lands in the log all the same."""
    cluster = make_cluster()
    cluster.add_worker("w1")
    gate, done = tmp_path / "gate", tmp_path / "done"
    script = f'echo before; while [ ! -e "{gate}" ]; do sleep 0.02; done; echo after; touch "{done}"'
    job = cluster.client.submit_job(TitanJob("last-words", command=["sh", "-c", script]))
    wait_until(lambda: cluster.client.fetch_logs(job) == "before\n", what="the first line")
    cluster.kill_master(signal.SIGKILL)
    gate.touch()
    wait_until(done.exists, what="the job to end while there is no master")
    cluster.start_master()
    cluster._client = None
    assert cluster.client.wait(job, 60).state == "SUCCEEDED"
    wait_until(lambda: cluster.client.fetch_logs(job) == "before\nafter\n", 30, what="every line in the log")


def test_drain_lets_running_jobs_finish_then_the_worker_exits(make_cluster, tmp_path: Path) -> None:
    cluster = make_cluster()
    drained = cluster.add_worker("drained", slots=1)
    client = cluster.client
    gate = tmp_path / "gate"
    running = client.submit_job(
        TitanJob(
            "running", command=["bash", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done; echo finished"]
        )
    )
    wait_until(lambda: client.get_job(running).state == "RUNNING", what="the job to run")
    out = cluster.cli("worker", "drain", "drained")
    assert out.returncode == 0, out.stderr
    assert "draining drained" in out.stdout
    wait_until(
        lambda: any(w.name == "drained" and w.state == "DRAINING" for w in client.list_workers()),
        what="DRAINING",
    )
    later = client.submit_job(TitanJob("later", command=["true"]))
    cluster.add_worker("other", slots=1)
    assert client.wait(later, 30).worker_name == "other"  # no new work for a draining worker
    gate.touch()
    assert client.wait(running, 30).state == "SUCCEEDED"
    assert client.fetch_logs(running) == "finished\n"
    assert drained.wait(30) == 0
    cluster.workers.pop("drained")
    wait_until(
        lambda: any(w.name == "drained" and w.state == "LEFT" for w in client.list_workers()), what="LEFT"
    )


def test_sigterm_drain_hands_back_jobs_past_the_deadline(make_cluster, tmp_path: Path) -> None:
    cluster = make_cluster()
    cluster.add_worker("leaving", slots=1, args=("--drain-timeout", "0.5", "--kill-grace", "1"))
    client = cluster.client
    job_id = client.submit_job(TitanJob(filename=str(first_attempt_hangs(tmp_path))))
    job_pids = pids(tmp_path)
    assert cluster.stop_worker("leaving", signal.SIGTERM) == 0
    for pid in job_pids:
        assert not pid_alive(pid)
    cluster.add_worker("next", slots=1)
    record = client.wait(job_id, 60)
    assert record.state == "SUCCEEDED"
    first = record.attempts[0]
    assert first.state == "CANCELLED" and "drain deadline" in first.reason
    assert client.get_result(job_id)["worker"] == "next"


def worker_memory_mode() -> str:
    """How a worker started by this test process enforces memory here: detected by a process started
    the same way (in cgroup v2, whether a worker can make cgroups depends on who shares its cgroup)."""
    probe = "from titan_runtime.worker.memory import MemoryEnforcer as M; e = M.detect(); print(e.mode); e.close()"
    return subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_memory_limit_and_external_sigkill_have_actionable_reasons(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    client = cluster.client
    hog = write(tmp_path / "hog.py", "blob = bytearray(400 * 1024 * 1024)\nprint('allocated')\n")
    job_id = client.submit_job(TitanJob(filename=str(hog), resources={"memory_mb": 200}))
    record = client.wait(job_id, 60)
    assert record.state == "FAILED"
    if worker_memory_mode() == "rlimit":  # the allocation fails inside the job
        assert record.reason == "exit code 1 (its address space was limited to 200 MB by resources.memory)"
        assert "MemoryError" in client.fetch_logs(job_id)
    else:  # a cgroup: the kernel's out-of-memory killer stops it
        assert (
            record.reason
            == "killed by the out-of-memory killer: it used more than its 200 MB (resources.memory)"
        )
        assert record.attempts[-1].signal == "SIGKILL"
    assert client.wait(
        client.submit_job(TitanJob(filename=str(hog), resources={"memory_mb": 800})), 60
    ).succeeded
    victim = client.submit_job(TitanJob(command=["sleep", "300"]))
    wait_until(lambda: client.get_job(victim).state == "RUNNING", what="the job to run")
    os.kill(client.get_job(victim).attempts[-1].pid, signal.SIGKILL)  # what the kernel's OOM killer does
    record = client.wait(victim, 30)
    assert record.state == "FAILED"
    assert record.reason == "killed by SIGKILL, likely out of memory"
    status = json.loads(cluster.cli("status", victim, "--json").stdout)
    assert status["attempts"][0]["signal"] == "SIGKILL"
