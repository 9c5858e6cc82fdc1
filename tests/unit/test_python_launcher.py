"""The Python launcher: a script forked from a started interpreter must not be able to tell.

Every check runs the same script both ways (exec'd by the worker, forked by the launcher) with real
processes and compares what it saw and how it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from titan_runtime.testing import pid_alive, wait_until
from titan_runtime.worker import launcher as launcher_module
from titan_runtime.worker.launcher import PythonLauncher
from titan_runtime.worker.process import JobProcess, ProcessExit
from titan_runtime.worker.spool import Spool

pytestmark = pytest.mark.skipif(not launcher_module.supported(), reason="the launcher needs Linux pidfds")

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONUNBUFFERED": "1", "HOME": "/nonexistent"}

#: The signals a process gives its exec'd children as it has them when ignored or blocked.
_INHERITED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)


@pytest.fixture(autouse=True)
def a_worker_like_test_process() -> Any:
    """The exec'd half of each comparison is a child of this test process and inherits an ignored
    or blocked signal from it (a worker starts clean): once, in a full CI run, something earlier in
    the process left SIGTERM ignored or blocked, and an exec'd script that killed itself with
    SIGTERM exited 0 while the forked one was killed. Each test here starts from default
    dispositions and an empty mask, says what it found otherwise, and puts it back."""
    mask = signal.pthread_sigmask(signal.SIG_SETMASK, [])
    ignored = [sig for sig in _INHERITED if signal.getsignal(sig) is signal.SIG_IGN]
    for sig in ignored:
        signal.signal(sig, signal.SIG_DFL)
    if mask or ignored:
        found = f"blocked {sorted(s.name for s in mask)}, ignored {[s.name for s in ignored]}"
        print(f"the test process came with signals changed by an earlier test: {found}", file=sys.stderr)
    try:
        yield
    finally:
        for sig in ignored:
            signal.signal(sig, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


PROBE = """\
import atexit, json, os, signal, sys, threading
def at_exit():
    print("atexit ran", flush=True)
atexit.register(at_exit)
def late():
    import time
    time.sleep(0.05)
    print("thread joined", flush=True)
threading.Thread(target=late).start()
seen = {
    "argv": sys.argv,
    "path0": sys.path[0],
    "name": __name__,
    "file": __file__,
    "main_is_me": sys.modules["__main__"].__dict__ is globals(),
    "cwd": os.getcwd(),
    "env": {k: os.environ.get(k) for k in ("JOB_VALUE", "HOME", "PYTHONUNBUFFERED")},
    "leads_session": os.getsid(0) == os.getpid() == os.getpgid(0),
    "stdin": sys.stdin.read(),
    "stdout_line_buffered": sys.stdout.line_buffering,
    "stdout_write_through": sys.stdout.write_through,
    "sigint": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
    "sigterm": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
    "sighup": signal.getsignal(signal.SIGHUP) == signal.SIG_DFL,
    "sigpipe": signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN,
    "doc": __doc__,
    "loader": type(__loader__).__name__,
    "spec": __spec__,
    "fds": sorted(os.listdir("/proc/self/fd")),
}
print(json.dumps(seen), flush=True)
print("to stderr", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


async def with_launcher(body: Callable[[PythonLauncher | None], Awaitable[Any]], fork: bool) -> Any:
    launcher = PythonLauncher(ENV) if fork else None
    try:
        return await body(launcher)
    finally:
        if launcher is not None:
            launcher.close()


def records(work: Path) -> list[tuple[str, str]]:
    """The (stream, text) records a job's Spool wrote to WORK/out.log, with `work` written WORK."""
    raw = (work / "out.log").read_bytes() if (work / "out.log").exists() else b""
    out = []
    for line in raw.decode().split("\n")[:-1]:
        _, stream, text = line.split(" ", 2)
        out.append((stream, text.replace(str(work), "WORK")))
    return out


def run_script(
    tmp_path: Path, source: str, args: list[str], fork: bool, env: dict[str, str] | None = None
) -> tuple[ProcessExit, list[tuple[str, str]], int, bool]:
    """(how it ended, its output records, its pid, whether the launcher forked it)."""
    work = tmp_path / ("fork" if fork else "exec")
    work.mkdir(parents=True)
    script = work / "job.py"
    script.write_text(source)
    spool = Spool(work / "out.log")
    argv = [sys.executable, "-u", str(script), *args]
    job_env = {**ENV, **(env or {})}

    async def body(launcher: PythonLauncher | None) -> tuple[ProcessExit, int, bool]:
        proc = JobProcess(argv, work, job_env, spool, lambda: None)
        use = launcher if launcher is not None and launcher.compatible(argv, job_env) else None
        pid = await proc.start(use)
        forked = proc.proc is None
        return await proc.wait(), pid, forked

    done, pid, forked = asyncio.run(with_launcher(body, fork))
    spool.close()
    out = records(work)
    return done, out, pid, forked


#: A forked job that asks for it exits without the interpreter's teardown (TITAN_FAST_EXIT=1, what
#: warm Dagster steps ask for): threads, atexit, output and exit codes must be the same.
FAST_EXIT = pytest.mark.parametrize("fast", [False, True], ids=["teardown", "fast-exit"])


@FAST_EXIT
@pytest.mark.parametrize("code", [0, 3])
def test_a_forked_script_sees_and_ends_as_an_execd_one(tmp_path: Path, code: int, fast: bool) -> None:
    env = {"JOB_VALUE": "ünï,code", **({"TITAN_FAST_EXIT": "1"} if fast else {})}
    runs = {fork: run_script(tmp_path, PROBE, [str(code)], fork, env) for fork in (False, True)}
    (exec_done, exec_out, _, exec_forked), (fork_done, fork_out, _, fork_forked) = runs[False], runs[True]
    assert (exec_forked, fork_forked) == (False, True)
    assert fork_done == exec_done
    assert fork_done.exit_code == code
    assert sorted(fork_out) == sorted(exec_out)
    seen = json.loads(next(text for stream, text in fork_out if text.startswith("{")))
    assert seen["argv"] == ["WORK/job.py", str(code)] and seen["cwd"] == "WORK" and seen["path0"] == "WORK"
    assert seen["env"] == {"JOB_VALUE": "ünï,code", "HOME": "/nonexistent", "PYTHONUNBUFFERED": "1"}
    assert all(seen[k] for k in ("leads_session", "sigint", "sigterm", "sighup", "sigpipe", "main_is_me"))
    assert ("O", "atexit ran") in fork_out and ("O", "thread joined") in fork_out


def test_a_fast_exit_skips_the_teardown_of_modules_only(tmp_path: Path) -> None:
    """What TITAN_FAST_EXIT=1 leaves out, and all it leaves out: a module's objects are not
    finalized at exit (as in a multiprocessing child)."""
    source = (
        "import atexit, sys\nclass Kept:\n    def __del__(self):\n        print('finalized', flush=True)\n"
        "kept = Kept()\natexit.register(print, 'atexit ran')\nprint('ran')\nsys.exit(5)\n"
    )
    exec_done, exec_out, _, _ = run_script(tmp_path, source, [], fork=False, env={"TITAN_FAST_EXIT": "1"})
    fork_done, fork_out, _, forked = run_script(tmp_path, source, [], fork=True, env={"TITAN_FAST_EXIT": "1"})
    assert forked and fork_done == exec_done and fork_done.exit_code == 5
    assert exec_out == [("O", "ran"), ("O", "atexit ran"), ("O", "finalized")]
    assert fork_out == [("O", "ran"), ("O", "atexit ran")]


#: Ways a Python job fails, each of which must look the same forked and exec'd.
FAILURES = {
    "exception": "def f():\n    raise ValueError('boom')\nf()\n",
    "exit-message": "import sys\nsys.exit('a message')\n",
    "keyboard-interrupt": "raise KeyboardInterrupt\n",
    "signal": "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n",
    "syntax-error": "x = (\n",
}


@FAST_EXIT
@pytest.mark.parametrize("source", FAILURES.values(), ids=FAILURES.keys())
def test_failures_look_the_same(tmp_path: Path, source: str, fast: bool) -> None:
    env = {"TITAN_FAST_EXIT": "1"} if fast else {}
    exec_done, exec_out, _, _ = run_script(tmp_path, source, [], fork=False, env=env)
    fork_done, fork_out, _, forked = run_script(tmp_path, source, [], fork=True, env=env)
    assert forked
    assert fork_done == exec_done and fork_done.outcome == "failed"
    assert fork_out == exec_out


MULTIPROCESSING = """\
import multiprocessing, pickle, sys

def square(x):
    return x * x

if __name__ == "__main__":
    print(pickle.loads(pickle.dumps(square)) is square, flush=True)
    for method in ("spawn", "forkserver", "fork"):
        with multiprocessing.get_context(method).Pool(2) as pool:
            print(method, pool.map_async(square, range(4)).get(30), flush=True)
"""


def test_multiprocessing_works_as_in_an_execd_script(tmp_path: Path) -> None:
    """Its spawn and forkserver children start a new interpreter from the parent's __main__ (by its
    __file__ and sys.path), and pickle finds the script's functions there."""
    exec_done, exec_out, _, _ = run_script(tmp_path, MULTIPROCESSING, [], fork=False)
    fork_done, fork_out, _, forked = run_script(tmp_path, MULTIPROCESSING, [], fork=True)
    assert forked
    assert fork_done == exec_done and fork_done.outcome == "succeeded"
    assert (
        [text for _, text in fork_out]
        == [text for _, text in exec_out]
        == [
            "True",
            "spawn [0, 1, 4, 9]",
            "forkserver [0, 1, 4, 9]",
            "fork [0, 1, 4, 9]",
        ]
    )


def test_a_job_that_sets_startup_variables_is_execd(tmp_path: Path) -> None:
    for env in ({"PYTHONPATH": str(tmp_path)}, {"LC_ALL": "C"}, {"PYTHONHASHSEED": "1"}):
        _, _, _, forked = run_script(tmp_path / str(len(os.listdir(tmp_path))), "pass\n", [], True, env)
        assert not forked, env
    _, _, _, forked = run_script(tmp_path / "plain", "pass\n", [], True, {"OTHER": "1"})
    assert forked


def first_printed(log: Path) -> str:
    """The text of the first record a Spool wrote to `log` (records are "TIME STREAM TEXT")."""
    return log.read_text().split("\n")[0].split(" ", 2)[2]


@pytest.fixture(autouse=False)
def tmp_work(tmp_path: Path) -> Path:
    (tmp_path / "w").mkdir()
    return tmp_path / "w"


def test_terminate_reaches_grandchildren_and_an_exit_kills_what_is_left(tmp_work: Path) -> None:
    """A cancel SIGTERMs the whole group; a leader that exits takes its group with it."""
    script = tmp_work / "job.py"
    script.write_text(
        textwrap.dedent(
            """\
            import subprocess, sys, time
            child = subprocess.Popen(["sleep", "60"])
            print(child.pid, flush=True)
            if sys.argv[1] == "wait":
                time.sleep(60)
            """
        )
    )

    async def body(launcher: PythonLauncher | None) -> list[int]:
        assert launcher is not None
        grandchildren = []
        for mode in ("wait", "leave"):
            spool = Spool(tmp_work / f"{mode}.log")
            printed = asyncio.Event()
            argv = [sys.executable, "-u", str(script), mode]
            proc = JobProcess(argv, tmp_work, ENV, spool, printed.set)
            await proc.start(launcher)
            assert proc.proc is None  # forked
            await asyncio.wait_for(printed.wait(), 20)
            if mode == "wait":
                proc.terminate("cancelled", "asked", 5.0)
            done = await asyncio.wait_for(proc.wait(), 20)
            assert done.outcome == ("cancelled" if mode == "wait" else "succeeded")
            spool.close()
            grandchildren.append(int(first_printed(tmp_work / f"{mode}.log")))
        return grandchildren

    for pid in asyncio.run(with_launcher(body, fork=True)):
        wait_until(lambda pid=pid: not pid_alive(pid), 10, what=f"grandchild {pid} to be gone")


def test_when_the_launcher_dies_its_jobs_are_handed_back_and_later_jobs_are_execd(tmp_work: Path) -> None:
    script = tmp_work / "job.py"
    script.write_text("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    argv = [sys.executable, "-u", str(script)]

    async def body(launcher: PythonLauncher | None) -> None:
        assert launcher is not None
        printed = asyncio.Event()
        proc = JobProcess(argv, tmp_work, ENV, Spool(tmp_work / "a.log"), printed.set)
        pid = await proc.start(launcher)
        await asyncio.wait_for(printed.wait(), 20)
        os.kill(launcher.pid, signal.SIGKILL)
        done = await asyncio.wait_for(proc.wait(), 20)
        assert done.outcome == "cancelled" and "launcher exited" in done.reason
        wait_until(lambda: not pid_alive(pid), 10, what="the orphaned job to be killed")
        assert not launcher.compatible(argv, ENV)
        later = JobProcess(
            [sys.executable, "-c", "pass"], tmp_work, ENV, Spool(tmp_work / "b.log"), lambda: None
        )
        await later.start(launcher)  # refused by a dead launcher: exec'd instead
        assert later.proc is not None
        assert (await later.wait()).outcome == "succeeded"

    asyncio.run(with_launcher(body, fork=True))


def test_closing_the_launcher_stops_it_and_what_it_still_runs(tmp_work: Path) -> None:
    """The worker stops its jobs before it closes the launcher; one that could not (a test that
    timed out, say) must not leave a job behind either."""
    script = tmp_work / "job.py"
    script.write_text(
        "import subprocess, time\nprint(subprocess.Popen(['sleep', '300']).pid, flush=True)\ntime.sleep(300)\n"
    )
    spool = Spool(tmp_work / "out.log")

    async def body() -> list[int]:
        launcher = PythonLauncher(ENV)
        printed = asyncio.Event()
        # print() writes the line and its newline apart: wait for a whole line in the spool.
        proc = JobProcess(
            [sys.executable, "-u", str(script)], tmp_work, ENV, spool, lambda: spool.size and printed.set()
        )
        pid = await proc.start(launcher)
        assert proc.proc is None  # forked
        await asyncio.wait_for(printed.wait(), 20)
        launcher.close()
        return [launcher.pid, pid]

    pids = asyncio.run(body())
    spool.close()
    pids.append(int(first_printed(tmp_work / "out.log")))
    try:
        for pid in pids:
            wait_until(lambda pid=pid: not pid_alive(pid), 10, what=f"process {pid} to be gone")
    finally:  # when the check fails, the job's group must not outlive the test
        with contextlib.suppress(OSError):
            os.killpg(pids[1], signal.SIGKILL)
