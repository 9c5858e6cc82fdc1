"""A job's memory limit enforced by a real cgroup (worker/memory.py), on a host that lets this
process make one: here and in CI, cgroup v1's memory controller as root. Jobs run through the
worker's own process layer (JobProcess), with the enforcer this process detected, as a worker does.

Skipped, saying why, only where the host gives no usable cgroup (the rlimit fallback is covered by
tests/unit/test_worker_process.py and tests/integration/test_fault_tolerance.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import pid_alive
from titan_runtime.worker.jobuser import JobUser
from titan_runtime.worker.memory import RLIMIT, MemoryEnforcer, enforcer
from titan_runtime.worker.process import JobProcess, ProcessExit
from titan_runtime.worker.spool import Spool

pytestmark = pytest.mark.integration

OOM = "killed by the out-of-memory killer: it used more than its 100 MB (resources.memory)"


@pytest.fixture(scope="module")
def cgroups() -> MemoryEnforcer:
    """This process's enforcer (the one a worker would have), or a skip that says why not."""
    found = enforcer()
    if found.mode == RLIMIT:
        pytest.skip(f"no usable cgroup memory controller on this host: {found.why}")
    return found


def hog(mb: int) -> list[str]:
    return [sys.executable, "-c", f"blob = bytearray({mb} * 1024 * 1024); print('allocated', flush=True)"]


def run(
    argv: list[str], tmp_path: Path, memory: MemoryEnforcer, user: JobUser | None = None
) -> tuple[ProcessExit, str]:
    """`argv` run as a job limited to 100 MB; its exit and its output (the spool's records)."""
    spool = Spool(tmp_path / "out.log")

    async def main() -> ProcessExit:
        proc = JobProcess(
            argv,
            tmp_path if user is None else Path("/"),  # a directory the job user can enter
            {"PATH": "/usr/bin:/bin"},
            spool,
            lambda: None,
            memory_mb=100,
            attempt_id="r-1/job#1",
            user=user,
            memory=memory,
        )
        await proc.start()
        return await proc.wait()

    done = asyncio.run(main())
    spool.close()
    out = tmp_path / "out.log"
    return done, out.read_text(errors="replace") if out.exists() else ""


def job_cgroups(memory: MemoryEnforcer) -> list[str]:
    assert memory.base is not None
    return sorted(p.name for p in memory.base.iterdir() if p.is_dir() and p.name.startswith("job-"))


def test_a_job_over_its_limit_is_killed_and_the_reason_says_so(
    cgroups: MemoryEnforcer, tmp_path: Path
) -> None:
    done, _ = run(hog(300), tmp_path, cgroups)
    assert (done.outcome, done.signal, done.reason) == ("failed", "SIGKILL", OOM)
    assert job_cgroups(cgroups) == []


def test_a_job_under_its_limit_runs_to_the_end(cgroups: MemoryEnforcer, tmp_path: Path) -> None:
    done, out = run(hog(40), tmp_path, cgroups)
    assert done.outcome == "succeeded" and "allocated" in out
    assert job_cgroups(cgroups) == []


def test_the_limit_counts_the_job_s_children_and_names_the_one_killed(
    cgroups: MemoryEnforcer, tmp_path: Path
) -> None:
    parent = textwrap.dedent(
        f"""\
        import subprocess, sys
        child = subprocess.run({hog(300)!r})
        print("child", child.returncode, flush=True)
        sys.exit(3)
        """
    )
    done, out = run([sys.executable, "-c", parent], tmp_path, cgroups)
    assert "child -9" in out
    assert (done.outcome, done.exit_code) == ("failed", 3)
    assert done.reason == (
        "exit code 3 after the out-of-memory killer killed one of its processes: "
        "the job used more than its 100 MB (resources.memory)"
    )


def test_what_escaped_the_job_s_process_group_dies_with_its_cgroup(
    cgroups: MemoryEnforcer, tmp_path: Path
) -> None:
    """No orphan sweep here (JobProcess without `orphans`): only the cgroup can find the daemon."""
    daemon = textwrap.dedent(
        """\
        import os, sys, time
        printed, said = os.pipe()
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                print(os.getpid(), flush=True)
                os.write(said, b"!")
                time.sleep(300)
            os._exit(0)
        os.wait()
        os.read(printed, 1)  # the daemon has printed its pid: the job may end
        """
    )
    done, out = run([sys.executable, "-c", daemon], tmp_path, cgroups)
    assert done.outcome == "succeeded"
    pid = int(next(line for line in out.splitlines() if line.split()[-1].isdigit()).split()[-1])
    assert not pid_alive(pid)
    assert job_cgroups(cgroups) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="running a job as another user needs root")
def test_a_job_of_another_user_joins_its_cgroup(cgroups: MemoryEnforcer, tmp_path: Path) -> None:
    nobody = JobUser.resolve("nobody")
    shown, out = run(["sh", "-c", "id -u; cat /proc/self/cgroup"], tmp_path, cgroups, nobody)
    assert shown.outcome == "succeeded", out
    assert str(nobody.uid) in out and "/job-r-1_job_1" in out
    done, _ = run(["python3", "-c", "bytearray(300 * 1024 * 1024)"], tmp_path, cgroups, nobody)
    assert done.reason == OOM
    assert job_cgroups(cgroups) == []


WORKER = textwrap.dedent(
    """\
    import json, subprocess, sys, time
    from titan_runtime.worker.memory import enforcer
    found = enforcer()
    job = found.limit(["sleep", "300"], 50, "a-1")
    proc = subprocess.Popen(job.argv)
    deadline = time.monotonic() + 10
    while str(proc.pid) not in (job.cgroup / "cgroup.procs").read_text().split():
        assert time.monotonic() < deadline, "the job never joined its cgroup"
        time.sleep(0.01)
    if sys.argv[1] == "close":
        found.close()
        proc.wait()
    print(json.dumps({"base": str(found.base), "job": str(job.cgroup), "pid": proc.pid}), flush=True)
    # "exit": the job still runs as this process exits; enforcer() registered close() at exit
    """
)


@pytest.mark.parametrize("how", ["close", "exit"])
def test_a_stopping_worker_leaves_no_cgroup(cgroups: MemoryEnforcer, how: str) -> None:
    """close() kills a job still running and removes `titan-<pid>`; a worker that never called it
    has it done at exit."""
    done = subprocess.run([sys.executable, "-c", WORKER, how], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert not pid_alive(made["pid"])
    assert not Path(made["job"]).exists() and not Path(made["base"]).exists()
