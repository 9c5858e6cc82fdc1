"""`worker --job-user USER` (issue 19): each test checks a sentence of docs/security.md, "Running
jobs as another user", against a root worker whose jobs run as `nobody`.

The worker runs the system's interpreter with this checkout and the virtualenv's packages on
PYTHONPATH (as the `nobody` worker of test_security.py does): jobs of `nobody` run `.py` scripts
with the worker's Python, and the virtualenv's lives where `nobody` cannot go. Everything lives in
a directory every user may pass through, so that what keeps a job out is the mode of the worker's
and the master's own directories, not pytest's private temp dir.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.helpers import ProcessCluster, pid_alive, wait_until
from titan_runtime import TitanJob, config

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="running jobs as another user needs a worker started as root"
    ),
]

PYTHON = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
CHECKOUT = str(Path(__file__).resolve().parents[2])
PYTHONPATH = os.pathsep.join([CHECKOUT, *sysconfig.get_paths()["purelib"].split(os.pathsep)])


@dataclass
class JobUserCluster:
    cluster: ProcessCluster
    base: Path  # every user may pass through it
    work_dir: Path  # the worker's (root's, 0700), with a token file in it
    worker_pid: int
    nobody: pwd.struct_passwd

    @property
    def client(self):  # type: ignore[no-untyped-def]
        return self.cluster.client

    def launcher_pid(self) -> int:
        """The worker's Python launcher, once it runs as the job user and has made itself
        non-dumpable (its /proc files are root's from then on; before, it has received nothing)."""

        def find() -> int:
            for child in psutil.Process(self.worker_pid).children():
                try:
                    argv = child.cmdline()
                except psutil.Error:  # a job that has just ended
                    continue
                if (
                    len(argv) > 2
                    and argv[2].endswith("launcher_main.py")
                    and child.uids().real == self.nobody.pw_uid
                ):
                    return child.pid if os.stat(f"/proc/{child.pid}/environ").st_uid == 0 else 0
            return 0

        return wait_until(find, 30, what="the Python launcher")

    def run(self, job: TitanJob) -> tuple[str, str]:
        """Run `job` to success; (its id, its output)."""
        ref = self.client.submit_job(job)
        record = self.client.wait(ref, 60)
        assert record.state == "SUCCEEDED", (record.reason, self.client.fetch_logs(ref))
        return ref, self.client.fetch_logs(ref)

    def script(self, name: str, source: str) -> str:
        path = self.base / name
        path.write_text(source)
        return str(path)


@pytest.fixture(scope="module")
def jobs_as_nobody() -> Iterator[JobUserCluster]:
    if not os.path.exists(PYTHON):
        pytest.skip(f"needs {PYTHON}, which `nobody` can run")
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="titan-jobuser-"))
    os.chmod(base, 0o755)
    cluster = ProcessCluster(base / "cluster")
    try:
        cluster.root.mkdir()
        cluster.start_master()
        work = base / "worker"
        work.mkdir(mode=0o700)
        token = work / "token"
        token.touch(mode=0o600)
        token.write_text(cluster.token)
        argv = ["env", f"PYTHONPATH={PYTHONPATH}", PYTHON, "-m", "titan_runtime", "worker"]
        argv += ["--master", cluster.address, "--name", "ju", "--slots", "4", "--work-dir", str(work)]
        argv += ["--job-user", "nobody"]
        with open(cluster.root / "worker-ju.log", "ab") as log:
            worker = cluster.workers["ju"] = config.start_worker(argv, cluster.token, stdout=log, stderr=log)
        cluster.wait_for_worker("ju")
        yield JobUserCluster(cluster, base, work, worker.pid, nobody)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


PROBE = r"""
import ctypes, json, os, sys

spec = json.loads(sys.argv[1])

def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return type(exc).__name__

def read(path):
    with open(path, "rb") as fh:
        fh.read(1)

def parent(pid):
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])

def proc(pid):
    return {what: attempt(lambda: read(f"/proc/{pid}/{what}")) for what in ("environ", "mem")}

workspace = os.environ["TITAN_WORKSPACE"]
jobs_dir = os.path.dirname(os.path.dirname(workspace))
with open("made-by-the-job", "w") as fh:
    fh.write("x")
umask = os.umask(0)
os.umask(umask)
ancestors, pid = {}, parent(os.getpid())
while pid > 1:
    ancestors[pid] = proc(pid)
    pid = parent(pid)
seen = {
    "uids": os.getresuid(), "gids": os.getresgid(), "groups": sorted(os.getgroups()),
    "env": {k: os.environ.get(k) for k in ("HOME", "USER", "LOGNAME")},
    "cwd": os.getcwd(), "workspace": workspace, "umask": umask,
    "file_mode": os.stat("made-by-the-job").st_mode & 0o777,
    "dumpable": ctypes.CDLL(None).prctl(3, 0, 0, 0, 0),
    "list": {name: attempt(lambda p=p: os.listdir(p)) for name, p in {**spec["list"], "jobs dir": jobs_dir}.items()},
    "read": {name: attempt(lambda p=p: read(p)) for name, p in spec["read"].items()},
    "pids": {name: proc(pid) for name, pid in spec["pids"].items()},
    "ancestors": ancestors,
}
with open(os.environ["TITAN_RESULT_FILE"], "w") as fh:
    json.dump({"uid": os.getuid()}, fh)
print(json.dumps(seen))
"""


@pytest.mark.parametrize("how", ["exec'd", "forked"])
def test_a_job_runs_as_the_job_user_and_sees_none_of_the_workers_or_masters_files_or_processes(
    jobs_as_nobody: JobUserCluster, how: str
) -> None:
    c = jobs_as_nobody
    spec = {
        "list": {
            "work dir": str(c.work_dir),
            "spool": str(c.work_dir / "spool"),
            "data dir": str(c.cluster.data_dir),
        },
        "read": {
            "worker token": str(c.work_dir / "token"),
            "master token": str(c.cluster.data_dir / "token"),
        },
        "pids": {"worker": c.worker_pid, "launcher": c.launcher_pid()},
    }
    if how == "forked":
        job = TitanJob(filename=c.script("probe.py", PROBE), args=[json.dumps(spec)])
    else:
        job = TitanJob(command=[PYTHON, "-c", PROBE, json.dumps(spec)])
    ref, output = c.run(job)
    seen = json.loads(output)
    nobody = c.nobody
    # Its ids, groups and environment are the job user's.
    assert (seen["uids"], seen["gids"]) == (
        [nobody.pw_uid] * 3,
        [nobody.pw_gid] * 3,
    )  # real, effective, saved
    assert seen["groups"] == sorted(set(os.getgrouplist("nobody", nobody.pw_gid)))
    assert seen["env"] == {"HOME": nobody.pw_dir, "USER": "nobody", "LOGNAME": "nobody"}
    # Its files are its own alone (umask 077), in a workspace of its own outside the work dir.
    assert (seen["umask"], seen["file_mode"]) == (0o077, 0o600)
    assert seen["cwd"] == seen["workspace"] and not seen["workspace"].startswith(str(c.work_dir))
    # The worker's work dir (spool, token), the jobs' directory and the master's data dir are closed.
    assert seen["list"] == dict.fromkeys(["work dir", "spool", "data dir", "jobs dir"], "PermissionError")
    assert seen["read"] == {"worker token": "PermissionError", "master token": "PermissionError"}
    # Neither the worker's nor the launcher's environ or memory, nor any ancestor's.
    closed = {"environ": "PermissionError", "mem": "PermissionError"}
    assert seen["pids"] == {"worker": closed, "launcher": closed}
    assert seen["ancestors"] and all(what == closed for what in seen["ancestors"].values()), seen
    # A forked job is non-dumpable like its launcher; an exec'd one is an ordinary process.
    assert seen["dumpable"] == (0 if how == "forked" else 1)
    # Its result and its output come back.
    assert c.client.get_result(ref) == {"uid": nobody.pw_uid}


HOLD = """
import os, sys, time
print("holding", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
"""

SIBLINGS = """
import json, os, sys
seen = {}
for name, pid in json.loads(sys.argv[1]).items():
    os.kill(pid, 0)  # a process of its own user: it may signal it (PermissionError otherwise)
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            seen[name] = "its credential" if b"TITAN_TOKEN=tj1." in fh.read() else "no credential"
    except OSError as exc:
        seen[name] = type(exc).__name__
print(json.dumps(seen))
"""


def test_a_job_reads_an_execd_siblings_environment_but_not_a_forked_ones(
    jobs_as_nobody: JobUserCluster,
) -> None:
    c = jobs_as_nobody
    go = c.base / "siblings-go"
    holders = {
        "exec'd": c.client.submit_job(TitanJob(command=[PYTHON, "-c", HOLD, str(go)])),
        "forked": c.client.submit_job(TitanJob(filename=c.script("hold.py", HOLD), args=[str(go)])),
    }
    try:
        for ref in holders.values():  # printed by the job itself: the pid is the job user's by now
            wait_until(lambda ref=ref: "holding" in c.client.fetch_logs(ref), 30, what="the holders")
        pids = {how: c.client.get_job(ref).attempts[-1].pid for how, ref in holders.items()}
        assert {psutil.Process(pid).uids().real for pid in pids.values()} == {c.nobody.pw_uid}
        _, output = c.run(TitanJob(command=[PYTHON, "-c", SIBLINGS, json.dumps(pids)]))
        assert json.loads(output) == {"exec'd": "its credential", "forked": "PermissionError"}
    finally:
        go.touch()
    for ref in holders.values():
        assert c.client.wait(ref, 30).state == "SUCCEEDED"


TREE = """
import subprocess, sys
child = subprocess.Popen(["sleep", "600"])
print(child.pid, flush=True)
child.wait()
"""


@pytest.mark.parametrize("how", ["exec'd", "forked"])
def test_cancel_kills_a_job_of_the_job_user_and_its_children(
    jobs_as_nobody: JobUserCluster, how: str
) -> None:
    c = jobs_as_nobody
    if how == "forked":
        job = TitanJob(filename=c.script("tree.py", TREE))
    else:
        job = TitanJob(command=[PYTHON, "-c", TREE])
    ref = c.client.submit_job(job)
    child = int(wait_until(lambda: c.client.fetch_logs(ref).strip(), 30, what="the job's child"))
    leader = c.client.get_job(ref).attempts[-1].pid
    assert {psutil.Process(pid).uids().real for pid in (leader, child)} == {c.nobody.pw_uid}
    c.client.cancel(ref)
    assert c.client.wait(ref, 30).state == "CANCELLED"
    wait_until(lambda: not pid_alive(leader) and not pid_alive(child), 30, what="the job's processes to end")


PLANT = """
import os, sys
print(os.environ["TITAN_WORKSPACE"])
os.symlink(sys.argv[1], "escape")  # a link out of the workspace: removing it must not follow it
if sys.argv[2] == "fifo":
    os.mkfifo(os.environ["TITAN_RESULT_FILE"])  # would block a worker that opened it
else:
    os.symlink(sys.argv[2], os.environ["TITAN_RESULT_FILE"])
"""


@pytest.mark.parametrize("result", ["link to the token", "fifo"])
def test_what_a_job_plants_in_its_directory_does_not_lead_the_root_worker_out_of_it(
    jobs_as_nobody: JobUserCluster, result: str
) -> None:
    c = jobs_as_nobody
    victim = c.base / f"victim-{result.split()[0]}"
    victim.mkdir(exist_ok=True)
    (victim / "precious").write_text("keep me")
    target = str(c.work_dir / "token") if result != "fifo" else "fifo"
    ref = c.client.submit_job(TitanJob(command=[PYTHON, "-c", PLANT, str(victim), target]))
    record = c.client.wait(ref, 60)
    expected = "not a regular file" if result == "fifo" else "is a symbolic link"
    assert record.state == "FAILED" and expected in record.reason, record.reason
    assert c.client.get_result(ref) is None and c.cluster.token not in c.client.fetch_logs(ref)
    attempt_dir = Path(c.client.fetch_logs(ref).splitlines()[0]).parent
    wait_until(lambda: not attempt_dir.exists(), 30, what="the workspace to be removed")
    assert (victim / "precious").read_text() == "keep me"


def test_the_jobs_directory_is_roots_and_passable_and_each_attempts_is_the_job_users(
    jobs_as_nobody: JobUserCluster,
) -> None:
    c = jobs_as_nobody
    go = c.base / "dirs-go"
    ref = c.client.submit_job(
        TitanJob(command=["sh", "-c", f'echo "$TITAN_WORKSPACE"; while [ ! -e {go} ]; do sleep 0.05; done'])
    )
    try:
        workspace = Path(wait_until(lambda: c.client.fetch_logs(ref).strip(), 30, what="the workspace"))
        attempt, jobs = workspace.parent, workspace.parent.parent
        modes = {p: (stat.S_IMODE(p.stat().st_mode), p.stat().st_uid) for p in (jobs, attempt, workspace)}
        assert modes == {
            jobs: (0o711, 0),
            attempt: (0o700, c.nobody.pw_uid),
            workspace: (0o700, c.nobody.pw_uid),
        }
        assert stat.S_IMODE(c.work_dir.stat().st_mode) == 0o700 and c.work_dir.stat().st_uid == 0
    finally:
        go.touch()
    assert c.client.wait(ref, 30).state == "SUCCEEDED"
    wait_until(lambda: not attempt.exists(), 30, what="the attempt's directory to be removed")


def _worker(*args: str, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "titan_runtime", "worker", "--master", "127.0.0.1:1", "--token", "t", *args]
    env = dict(os.environ)
    if as_nobody:
        nobody = pwd.getpwnam("nobody")
        argv = [
            *("setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"),
            *("env", f"PYTHONPATH={PYTHONPATH}", PYTHON, *argv[1:]),
        ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=CHECKOUT)


def test_job_user_is_refused_on_a_worker_that_is_not_root_and_for_root_or_an_unknown_user() -> None:
    if not os.path.exists(PYTHON):
        pytest.skip(f"needs {PYTHON}, which `nobody` can run")
    done = _worker("--job-user", "nobody", as_nobody=True)
    assert done.returncode == 2 and done.stderr.strip() == (
        "titan-runtime: error: --job-user needs a worker started as root: "
        "only root can start processes as another user"
    ), done.stderr
    for user, why in (("root", "is root"), ("0", "is root"), ("no-such-user-here", "no such user")):
        done = _worker("--job-user", user)
        assert done.returncode == 2 and why in done.stderr, (user, done.stderr)


API = str(Path(CHECKOUT) / "example_pipelines" / "services" / "api.py")


def test_a_service_runs_as_the_job_user_and_stops(jobs_as_nobody: JobUserCluster) -> None:
    c = jobs_as_nobody
    ref = c.client.submit_job(TitanJob("api-as-nobody", API, job_type="SERVICE"))
    wait_until(
        lambda: [s for s in c.client.list_services("api-as-nobody") if s.state == "HEALTHY"],
        30,
        what="the api",
    )
    pid = c.client.get_job(ref).attempts[-1].pid
    assert psutil.Process(pid).uids().real == c.nobody.pw_uid
    with urllib.request.urlopen(
        f"http://{c.client.service_endpoint('api-as-nobody')}/hello", timeout=10
    ) as answer:
        assert json.loads(answer.read())["worker"] == "ju"
    c.client.stop_service("api-as-nobody")
    wait_until(lambda: not pid_alive(pid), 30, what="the service to stop")


def test_a_program_the_job_user_cannot_start_ends_the_job_with_127(jobs_as_nobody: JobUserCluster) -> None:
    c = jobs_as_nobody
    ref = c.client.submit_job(TitanJob(command=["no-such-program-here", "x"]))
    record = c.client.wait(ref, 60)
    assert (record.state, record.exit_code) == ("FAILED", 127), record
    assert c.client.fetch_logs(ref).startswith("titan: cannot start 'no-such-program-here': ")


def test_a_timeout_kills_a_job_of_the_job_user_and_its_children(jobs_as_nobody: JobUserCluster) -> None:
    c = jobs_as_nobody
    job = TitanJob(command=[PYTHON, "-c", TREE])
    job.timeout = 2
    ref = c.client.submit_job(job)
    child = int(wait_until(lambda: c.client.fetch_logs(ref).strip(), 30, what="the job's child"))
    leader = c.client.get_job(ref).attempts[-1].pid
    record = c.client.wait(ref, 60)
    assert "timed out after 2s" in record.reason, record
    wait_until(lambda: not pid_alive(leader) and not pid_alive(child), 30, what="the job's processes to end")
