"""The Python launcher with `python -m MODULE` jobs and preloaded packages: a module forked from a
started interpreter must not be able to tell either, and a preloading launcher serves only `-m`
jobs of the packages it imported.

Each check runs the same module both ways (exec'd, forked) with real processes, as
test_python_launcher.py does for scripts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import pytest

from tests.unit.test_python_launcher import (  # noqa: F401 - the fixture applies here too
    ENV,
    FAILURES,
    FAST_EXIT,
    PROBE,
    a_worker_like_test_process,
    records,
)
from titan_runtime.testing import pid_alive
from titan_runtime.worker import launcher as launcher_module
from titan_runtime.worker.launcher import Launchers, PythonLauncher, python_entry
from titan_runtime.worker.process import JobProcess, ProcessExit
from titan_runtime.worker.spool import Spool

#: The scripts' probe, its module spec by name (a module has one; JSON has no ModuleSpec).
MODULE_PROBE = PROBE.replace('"spec": __spec__,', '"spec": __spec__ and __spec__.name,')
assert MODULE_PROBE != PROBE

pytestmark = pytest.mark.skipif(not launcher_module.supported(), reason="the launcher needs Linux pidfds")


def run_argv(
    work: Path, argv: list[str], way: str, env: dict[str, str] = ENV
) -> tuple[ProcessExit, list[tuple[str, str]], bool]:
    """Run `argv` in `work`, `way` "exec" or "fork" (from the plain launcher): (how it ended, its
    output records with `work` written WORK, whether it was forked)."""
    spool = Spool(work / "out.log")

    async def body() -> tuple[ProcessExit, bool]:
        launchers = Launchers.start(env, None, ()) if way == "fork" else Launchers(None)
        try:
            proc = JobProcess(argv, work, env, spool, lambda: None)
            await proc.start(launchers.pick(argv, env))
            return await proc.wait(), proc.proc is None
        finally:
            launchers.close()

    done, forked = asyncio.run(body())
    spool.close()
    out = records(work)
    return done, out, forked


def run_module(
    tmp_path: Path, source: str, args: list[str], way: str, unbuffered_flag: bool = True, fast: bool = False
) -> tuple[ProcessExit, list[tuple[str, str]], bool]:
    """Package `probe` (its __main__ is `source`) run as `python [-u] -m probe ARGS` (run_argv);
    `fast`: with TITAN_FAST_EXIT=1, as a warm Dagster step."""
    work = tmp_path / way
    (work / "probe").mkdir(parents=True)
    (work / "probe" / "__init__.py").write_text("")
    (work / "probe" / "__main__.py").write_text(source)
    argv = [sys.executable, *(["-u"] if unbuffered_flag else []), "-m", "probe", *args]
    return run_argv(work, argv, way, {**ENV, "TITAN_FAST_EXIT": "1"} if fast else ENV)


@FAST_EXIT
@pytest.mark.parametrize("unbuffered_flag", [True, False], ids=["-u", "PYTHONUNBUFFERED"])
@pytest.mark.parametrize("code", [0, 3])
def test_a_forked_module_sees_and_ends_as_an_execd_one(
    tmp_path: Path, code: int, unbuffered_flag: bool, fast: bool
) -> None:
    runs = {
        way: run_module(tmp_path, MODULE_PROBE, [str(code), "x y"], way, unbuffered_flag, fast)
        for way in ("exec", "fork")
    }
    (exec_done, exec_out, exec_forked), (fork_done, fork_out, fork_forked) = runs["exec"], runs["fork"]
    assert (exec_forked, fork_forked) == (False, True)
    assert fork_done == exec_done and fork_done.exit_code == code
    assert sorted(fork_out) == sorted(exec_out)
    seen = json.loads(next(text for _, text in fork_out if text.startswith("{")))
    assert seen["argv"] == ["WORK/probe/__main__.py", str(code), "x y"]
    assert seen["cwd"] == "WORK" and seen["path0"] == "WORK" and seen["name"] == "__main__"
    assert seen["file"] == "WORK/probe/__main__.py" and seen["main_is_me"]
    assert seen["loader"] == "SourceFileLoader" and seen["spec"] == "probe.__main__"
    assert all(seen[k] for k in ("leads_session", "sigint", "sigterm", "sighup", "sigpipe"))
    assert ("O", "atexit ran") in fork_out and ("O", "thread joined") in fork_out


@FAST_EXIT
@pytest.mark.parametrize("source", FAILURES.values(), ids=FAILURES.keys())
def test_a_modules_failures_look_the_same(tmp_path: Path, source: str, fast: bool) -> None:
    exec_done, exec_out, _ = run_module(tmp_path, source, [], "exec", fast=fast)
    fork_done, fork_out, forked = run_module(tmp_path, source, [], "fork", fast=fast)
    assert forked
    assert fork_done == exec_done and fork_done.outcome == "failed"
    assert fork_out == exec_out


def test_a_missing_module_fails_as_python_says(tmp_path: Path) -> None:
    """`python -m nothing_here`: the interpreter's own message and exit status, forked or not."""
    runs = {}
    for way in ("exec", "fork"):
        (tmp_path / way).mkdir()
        runs[way] = run_argv(tmp_path / way, [sys.executable, "-u", "-m", "nothing_here"], way)
    assert runs["fork"][2] and not runs["exec"][2]
    assert runs["fork"][0] == runs["exec"][0] and runs["fork"][0].exit_code == 1
    assert runs["fork"][1] == runs["exec"][1] == [("E", f"{sys.executable}: No module named nothing_here")]


def test_preloaded_modules_are_there_for_the_job_and_not_for_scripts(tmp_path: Path) -> None:
    """The packages are imported once, in the preloading launcher: its `-m` jobs find them there; a
    script job, or a module of another package, goes to the plain launcher (a fresh interpreter's
    modules). With no launcher running, every job is exec'd."""
    (tmp_path / "pre_pkg").mkdir()
    (tmp_path / "pre_pkg" / "__init__.py").write_text("import json.decoder\nLOADED = True\n")
    (tmp_path / "pre_pkg" / "__main__.py").write_text(
        "import sys\nprint('pre_pkg' in sys.modules and 'json.decoder' in sys.modules, sys.argv[1:])\n"
    )
    (tmp_path / "script.py").write_text("import sys\nprint('pre_pkg' in sys.modules)\n")
    env = {**ENV, "PYTHONPATH": str(tmp_path)}  # the launchers' and the jobs' alike: where pre_pkg is

    async def body() -> dict[str, tuple[bool, str]]:
        launchers = Launchers.start(env, None, ("pre_pkg",))
        seen: dict[str, tuple[bool, str]] = {}
        try:
            for name, argv in (
                ("module", [sys.executable, "-m", "pre_pkg", "a"]),
                ("script", [sys.executable, "-u", str(tmp_path / "script.py")]),
                ("other", [sys.executable, "-m", "json.tool", "--help"]),
            ):
                spool = Spool(tmp_path / f"{name}.log")
                chosen = launchers.pick(argv, env)
                proc = JobProcess(argv, tmp_path, env, spool, lambda: None)
                await proc.start(chosen)
                assert (await proc.wait()).exit_code == 0
                spool.close()
                which = "preloaded" if chosen is launchers.preloaded else "plain"
                seen[name] = (
                    proc.proc is None,
                    which + ": " + (tmp_path / f"{name}.log").read_text().split(" ", 2)[2].split("\n")[0],
                )
        finally:
            launchers.close()
        return seen

    seen = asyncio.run(body())
    assert seen["module"] == (True, "preloaded: True ['a']")
    assert seen["script"] == (True, "plain: False")
    assert seen["other"][0] and seen["other"][1].startswith("plain: ")
    assert Launchers(None).pick([sys.executable, "-m", "pre_pkg"], env) is None


def test_a_job_that_asks_for_packages_gets_a_launcher_that_imported_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JobSpec.preload: the first job asking for a set starts a launcher for it, the next ones
    reuse it; past MAX_ON_DEMAND sets, a job forks from the plain launcher (never waits, never
    exec'd for it). The worker is told of every launcher it started (its orphans are its own)."""
    monkeypatch.setattr(launcher_module, "MAX_ON_DEMAND", 2)
    script = tmp_path / "job.py"
    script.write_text("import sys\nprint(sorted(m for m in ('email', 'csv', 'wave') if m in sys.modules))\n")
    argv = [sys.executable, "-u", str(script)]

    async def body() -> list[tuple[str, int]]:
        started: list[PythonLauncher] = []
        launchers = Launchers.start(ENV, None, (), on_start=started.append)
        seen = []
        try:
            for n, asked in enumerate([("email",), ("email",), ("csv",), ("wave",), ()]):
                spool = Spool(tmp_path / f"{n}.log")
                chosen = launchers.pick(argv, ENV, asked)
                proc = JobProcess(argv, tmp_path, ENV, spool, lambda: None)
                await proc.start(chosen)
                assert (await proc.wait()).exit_code == 0 and proc.proc is None  # forked, every one
                spool.close()
                seen.append(((tmp_path / f"{n}.log").read_text().split(" ", 2)[2].strip(), len(started)))
        finally:
            launchers.close()
        return seen

    assert asyncio.run(body()) == [
        ("['email']", 2),  # the plain launcher, and one for email
        ("['email']", 2),  # the same one again
        ("['csv']", 3),
        ("[]", 3),  # a third set: past the cap, the plain launcher
        ("[]", 3),
    ]


def test_a_package_that_cannot_be_preloaded_is_said_and_its_jobs_still_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        launchers = Launchers.start(ENV, None, ("no_such_package_here",))
        try:
            assert launchers.preloaded is not None
            argv = [sys.executable, "-m", "json.tool", "--help"]
            proc = JobProcess(argv, tmp_path, ENV, Spool(tmp_path / "out.log"), lambda: None)
            await proc.start(launchers.pick(argv, ENV))
            assert (await proc.wait()).exit_code == 0
            # The job did not need that launcher, so it may end before its first message is read.
            deadline = time.monotonic() + 30
            while not launchers.preloaded.ready and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        finally:
            launchers.close()

    with caplog.at_level(logging.WARNING, logger="titan_runtime.worker.launcher"):
        asyncio.run(body())
    assert any(
        "could not preload no_such_package_here (ModuleNotFoundError" in r.getMessage()
        for r in caplog.records
    ), caplog.text


def test_a_script_named_relative_to_the_workspace_sees_what_python_gives_it(tmp_path: Path) -> None:
    """`{python} job.py` (a command, not the worker's own absolute path): argv[0] as given, and
    __file__, sys.path[0] and tracebacks absolute, as Python makes them."""
    runs = {}
    for way in ("exec", "fork"):
        (tmp_path / way).mkdir()
        (tmp_path / way / "job.py").write_text(PROBE)
        done, out, forked = run_argv(tmp_path / way, [sys.executable, "job.py", "0"], way)
        assert done.exit_code == 0
        runs[way] = (forked, json.loads(next(text for _, text in out if text.startswith("{"))))
    assert (runs["exec"][0], runs["fork"][0]) == (False, True)
    for key in ("argv", "file", "path0", "cwd", "name", "main_is_me"):
        assert runs["fork"][1][key] == runs["exec"][1][key], key
    assert runs["fork"][1]["argv"] == ["job.py", "0"] and runs["fork"][1]["file"] == "WORK/job.py"


def test_a_package_that_hangs_at_import_holds_no_job_and_the_worker_s_modules_are_not_importable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A launcher whose packages take longer than PRELOAD_TIMEOUT to import is stopped and the
    jobs waiting for it are exec'd; and what a job may ask to preload is looked for where a fresh
    interpreter looks, not among the worker's own modules (the launcher's folder)."""
    monkeypatch.setattr(launcher_module, "PRELOAD_TIMEOUT", 1.0)
    (tmp_path / "slow_pkg.py").write_text("import time\ntime.sleep(600)\n")
    env = {**ENV, "PYTHONPATH": str(tmp_path)}
    argv = [sys.executable, "-u", str(tmp_path / "job.py")]
    (tmp_path / "job.py").write_text("print('ran')\n")

    async def body() -> tuple[bool, int]:
        launchers = Launchers.start(env, None, ())
        try:
            chosen = launchers.pick(argv, env, ("slow_pkg",))
            assert chosen is not None and not chosen.ready
            proc = JobProcess(argv, tmp_path, env, Spool(tmp_path / "out.log"), lambda: None)
            await proc.start(chosen)
            assert (await proc.wait()).exit_code == 0
            return proc.proc is not None, chosen.pid
        finally:
            launchers.close()

    with caplog.at_level(logging.WARNING, logger="titan_runtime.worker.launcher"):
        execd, pid = asyncio.run(body())
        assert execd  # not forked by the stuck launcher
        assert "ran" in (tmp_path / "out.log").read_text()
        assert not pid_alive(pid)  # stopped, and reaped when the worker closed its launchers
        assert "preloading slow_pkg did not finish in 1 s" in caplog.text

        async def worker_module() -> None:
            launchers = Launchers.start(ENV, None, ("jobuser",))  # a module beside launcher_main.py
            try:
                argv = [sys.executable, "-m", "json.tool", "--help"]
                proc = JobProcess(argv, tmp_path, ENV, Spool(tmp_path / "other.log"), lambda: None)
                await proc.start(launchers.pick(argv, ENV, ("jobuser",)))
                assert (await proc.wait()).exit_code == 0
            finally:
                launchers.close()

        asyncio.run(worker_module())
    assert "could not preload jobuser (ModuleNotFoundError" in caplog.text


def test_what_the_launcher_can_start() -> None:
    exe = sys.executable
    assert python_entry([exe, "-u", "job.py", "-x"]) == ("script", "job.py")
    assert python_entry([exe, "job.py"]) == ("script", "job.py")
    assert python_entry([exe, "-m", "dagster", "api", "execute_step"]) == ("module", "dagster")
    assert python_entry([exe, "-u", "-m", "a.b_c.d"]) == ("module", "a.b_c.d")
    for other in ([exe, "-c", "pass"], [exe, "-m"], [exe, "-m", "a-b"], [exe, "-X", "dev", "x.py"], [exe],
                  ["python3", "x.py"], [exe, "-u"]):  # fmt: skip
        assert python_entry(other) is None, other
