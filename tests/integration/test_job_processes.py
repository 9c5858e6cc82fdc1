"""A job's processes end with the job: daemons in sessions of their own included (the worker is a
child subreaper); a job ends when its main process does; forked jobs say who they are in `ps`."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import ProcessCluster, pid_alive, wait_until
from titan_runtime import TitanJob

pytestmark = pytest.mark.integration

#: Double-forks a daemon in a session of its own that keeps the job's stdout open, prints its pid,
#: then (argv[1] == "hang") stays, or ends at once.
DAEMON = textwrap.dedent(
    """\
    import os, sys, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            print(os.getpid(), flush=True)
            time.sleep(300)
        os._exit(0)
    os.wait()
    time.sleep(0.2)
    print("main done", flush=True)
    if sys.argv[1] == "hang":
        time.sleep(300)
    """
)


def daemon_job(tmp_path: Path, how: str, mode: str, **kw: object) -> TitanJob:
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON)
    if how == "script":  # forked by the worker's Python launcher
        return TitanJob(filename=str(script), args=[mode], **kw)  # type: ignore[arg-type]
    return TitanJob(command=["python3", str(script), mode], **kw)  # type: ignore[arg-type]


def daemon_pid(cluster: ProcessCluster, job: str) -> int:
    def printed() -> int | None:
        for line in cluster.client.read_logs(job):
            if line.isdigit():
                return int(line)
        return None

    return wait_until(printed, 30, what="the daemon to print its pid")


@pytest.mark.parametrize("how", ["script", "command"])
def test_a_job_ends_when_its_main_process_does_and_its_daemon_goes_with_it(
    cluster: ProcessCluster, tmp_path: Path, how: str
) -> None:
    job = cluster.client.submit_job(daemon_job(tmp_path, how, "end"))
    started = time.monotonic()
    record = cluster.client.wait(job, 60)
    took = time.monotonic() - started
    assert record.state == "SUCCEEDED", record.reason
    assert took < 20, f"the job took {took:.1f}s: it waited for the daemon holding its output"
    daemon = daemon_pid(cluster, job)
    wait_until(lambda: not pid_alive(daemon), 10, what="the daemon to be killed with its job")
    assert "main done" in cluster.client.fetch_logs(job)


@pytest.mark.parametrize("how", ["script", "command"])
def test_cancel_of_a_job_with_a_daemon_returns_within_the_grace_and_kills_it(
    make_cluster, tmp_path: Path, how: str
) -> None:
    cluster: ProcessCluster = make_cluster()
    cluster.add_worker("w1", slots=2, args=("--kill-grace", "2"))
    job = cluster.client.submit_job(daemon_job(tmp_path, how, "hang"))
    daemon = daemon_pid(cluster, job)
    wait_until(lambda: "main done" in cluster.client.fetch_logs(job), 30, what="the job to settle")
    started = time.monotonic()
    assert cluster.client.cancel(job, wait=True, timeout=30)
    took = time.monotonic() - started
    assert took < 10, f"cancel took {took:.1f}s"
    record = cluster.client.get_job(job)
    assert record.state == "CANCELLED" and record.attempts[-1].state == "CANCELLED"
    wait_until(lambda: not pid_alive(daemon), 10, what="the daemon of the cancelled job to be killed")


def test_a_daemon_of_a_running_job_is_left_alone_until_the_job_ends(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    """A job may start a helper daemon for its own use: it lives as long as the job does."""
    script = tmp_path / "helper.py"
    script.write_text(
        DAEMON.replace('if sys.argv[1] == "hang":\n    time.sleep(300)', "time.sleep(float(sys.argv[1]))")
    )
    job = cluster.client.submit_job(TitanJob(filename=str(script), args=["3"]))
    daemon = daemon_pid(cluster, job)
    wait_until(lambda: "main done" in cluster.client.fetch_logs(job), 30, what="the job to settle")
    time.sleep(1.5)  # no event to wait for: the worker sweeps every second and must leave it be
    assert pid_alive(daemon), "the daemon was killed while its job still ran"
    assert cluster.client.wait(job, 60).state == "SUCCEEDED"
    wait_until(lambda: not pid_alive(daemon), 10, what="the daemon to be killed at its job's end")


def test_forked_python_jobs_name_their_run_job_and_script_in_ps(
    cluster: ProcessCluster, tmp_path: Path
) -> None:
    script = tmp_path / "named.py"
    script.write_text("import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(300)\n")
    job = cluster.client.submit_job(TitanJob("named", filename=str(script), args=["--flag"]))
    pid = wait_until(
        lambda: next((int(line) for line in cluster.client.read_logs(job) if line.isdigit()), None), 30
    )
    title = " ".join(psutil.Process(pid).cmdline()).strip()  # setproctitle pads with NULs
    assert title.startswith(f"titan job {job}/named attempt 1 (at-") and title.endswith(": named.py --flag")
    cluster.client.cancel(job, wait=True)
