"""Running one attempt: workspace, program, environment, process, timeout, result.

The agent decides *when* (assignments, cancels); this module knows *how*: it fetches the script
or project from the cache, prepares a fresh workspace, starts the process in its own group with
the job's environment, enforces the timeout, and turns the way the process ended into the
report the master receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from titan_runtime.core.model import MAX_RESULT_BYTES
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.worker import health
from titan_runtime.worker.cache import ArtifactCache
from titan_runtime.worker.fnpool import FunctionPool
from titan_runtime.worker.jobuser import AttemptDir, JobUser, hand_over, open_result, prepare
from titan_runtime.worker.launcher import Forker, Launchers, python_entry
from titan_runtime.worker.orphans import Orphans
from titan_runtime.worker.ports import PortLeases, PortUnavailable
from titan_runtime.worker.process import GroupWatcher, JobProcess
from titan_runtime.worker.project import ProjectLimits, unpack
from titan_runtime.worker.spool import Spool

log = logging.getLogger(__name__)

#: Characters of a forked job's process title (what `ps` shows for it).
TITLE_LENGTH = 200
#: Up to this many files and no directory: a workspace is removed on the event loop, not by a thread.
SMALL_WORKSPACE = 8


@dataclass
class Execution:
    """One attempt on this worker, from assignment until the master acknowledged its end: what its
    process did. What the master has been told of it is the link's (core/worker_link.py)."""

    assignment: pb.Assignment
    spool: Spool
    workspace: Path
    result_path: Path
    process: JobProcess | None = None
    pid: int = 0
    started_at: float = 0.0
    exit: pb.AttemptExit | None = None
    cancel: tuple[str, float] | None = None  # (reason, grace) asked before the process started
    task: asyncio.Task[None] | None = None
    ports: dict[str, int] = field(default_factory=dict)  # services: leased ports by name
    # With --job-user: the attempt's own directory (workspace and result file), the job user's once
    # the job starts, removed whole. None: the workspace is in the worker's work dir.
    private: AttemptDir | None = None
    healthy: bool = False

    @property
    def is_service(self) -> bool:
        return self.assignment.spec.kind == "service"

    @property
    def attempt_id(self) -> str:
        return self.assignment.attempt_id

    def stop(self, outcome: str, reason: str, grace: float) -> None:
        """SIGTERM the process group (SIGKILL after `grace`), or make sure it never starts."""
        if self.process is not None:
            self.process.terminate(outcome, reason, grace)
        elif self.exit is None:
            self.cancel = (reason, grace)


def expand(arg: str, ports: dict[str, int]) -> str:
    """Placeholders for what only the worker knows: `{python}` (an argument on its own) is its
    interpreter; `{port}` is a service's (first) port and `{port.NAME}` a named one."""
    if arg == "{python}":
        return sys.executable
    if "{port" in arg and ports:
        arg = arg.replace("{port}", str(next(iter(ports.values()))))
        for name, port in ports.items():
            arg = arg.replace(f"{{port.{name}}}", str(port))
    return arg


def raised(result_json: str) -> str:
    """ "TYPE: message" of a function task's exception, from its result ("" if it holds none)."""
    try:
        result = json.loads(result_json)
    except ValueError:
        return ""
    if not isinstance(result, dict) or "titan.python.error" not in result:
        return ""
    message = str(result.get("message", ""))
    return f"{result.get('type', 'Exception')}: {message}" if message else str(result.get("type", ""))


def port_env(ports: dict[str, int]) -> dict[str, str]:
    """$PORT and $TITAN_PORT (the first port), $PORT_<NAME> and $TITAN_PORT_<NAME> for named ones."""
    if not ports:
        return {}
    first = str(next(iter(ports.values())))
    env = {"PORT": first, "TITAN_PORT": first}
    for name, port in ports.items():
        env[f"PORT_{name.upper()}"] = env[f"TITAN_PORT_{name.upper()}"] = str(port)
    return env


class AttemptRunner:
    def __init__(
        self,
        *,
        master: str,
        worker_id: str,
        worker_name: str,
        cache: ArtifactCache,
        kill_grace: float,
        keep_workspaces: bool,
        watcher: GroupWatcher | None,
        on_change: Callable[[], None],
        ports: PortLeases | None = None,
        launchers: Launchers | None = None,
        functions: FunctionPool | None = None,
        orphans: Orphans | None = None,
        project_limits: ProjectLimits | None = None,
        job_user: JobUser | None = None,
        gpus: tuple[str, ...] = (),
    ) -> None:
        self.job_user = job_user  # None: jobs run as the worker's own user
        self.gpus = gpus  # this worker's devices: each job sees only those it was given
        self.ports = ports or PortLeases()
        self.orphans = orphans
        self.project_limits = project_limits or ProjectLimits()
        self.launchers = launchers or Launchers(None)  # fork Python jobs; none: every job is exec'd
        self.functions = functions  # the warm processes of function tasks (None: none run here)
        # The worker's own environment, minus the cluster token, which a job must never see.
        self.base_env = {k: v for k, v in os.environ.items() if k != "TITAN_TOKEN"}
        if job_user is not None:  # a job of another user finds its own HOME, USER and LOGNAME
            self.base_env.update(job_user.env())

        self.master = master
        self.worker_id = worker_id
        self.worker_name = worker_name
        self.cache = cache
        self.kill_grace = kill_grace
        self.keep_workspaces = keep_workspaces
        self.watcher = watcher
        self._on_change = on_change

    async def run(self, ex: Execution) -> None:
        """Run the attempt to its end; always leaves `ex.exit` set (never raises)."""
        a = ex.assignment
        spec = a.spec
        timer: asyncio.TimerHandle | None = None
        watching: asyncio.Task[None] | None = None
        try:
            if ex.private is not None:
                prepare(ex.private)
            else:
                ex.workspace.mkdir(parents=True, exist_ok=True)
            if ex.is_service:
                try:
                    ex.ports = self.ports.lease(spec.ports or ("port",), spec.port, self.worker_name)
                except PortUnavailable as exc:
                    ex.spool.note(f"titan: {exc}")
                    ex.exit = pb.AttemptExit(outcome="error", reason=str(exc))
                    return
            argv = (
                [sys.executable, "-m", "titan_runtime.worker.fn_main"]
                if spec.kind == "function"
                else await self.argv(ex)
            )
            if ex.cancel is not None:
                ex.exit = pb.AttemptExit(outcome="cancelled", reason=ex.cancel[0])
                return
            if ex.private is not None and self.job_user is not None:  # all root's work is done now
                await asyncio.get_running_loop().run_in_executor(None, hand_over, ex.private, self.job_user)
            env = self.env(ex)
            # A job with secrets is exec'd, never forked: what the launcher receives stays in its heap,
            # which every job it forks later gets a copy of (docs/security.md, "Secrets").
            forkable = not (spec.memory_mb or ex.assignment.secret_env)
            launcher: Forker | None = self.launchers.pick(argv, env, spec.preload) if forkable else None
            if spec.kind == "function":  # handed to a warm process of its run: never a process of its own
                if self.functions is None:
                    raise ValueError("this worker runs no function tasks (they need Linux)")
                launcher = self.functions.call(a.run_id, spec.call, a.inputs)
            process = JobProcess(
                argv,
                ex.workspace,
                env,
                ex.spool,
                self._on_change,
                self.watcher,
                spec.memory_mb,
                orphans=self.orphans,
                attempt_id=ex.attempt_id,
                title=self.title(ex, argv),
                user=self.job_user,
            )
            ex.pid = await process.start(launcher)
            ex.process = process
            if ex.cancel is not None:  # asked while it was being started
                process.terminate("cancelled", *ex.cancel)
            ex.started_at = time.time()
            self._on_change()
            if ex.is_service:
                watching = asyncio.create_task(
                    health.watch(
                        spec.health,
                        next(iter(ex.ports.values())),
                        lambda: self._healthy(ex),
                        lambda why: process.terminate("unhealthy", why, self.kill_grace),
                    )
                )
            if spec.timeout > 0:
                timer = asyncio.get_running_loop().call_later(
                    spec.timeout,
                    process.terminate,
                    "timeout",
                    f"timed out after {spec.timeout:g}s",
                    self.kill_grace,
                )
            done = await process.wait()
            outcome, reason, result_json = done.outcome, done.reason, ""
            if outcome == "succeeded" or (spec.kind == "function" and outcome == "failed"):
                result_json, problem = self.read_result(ex)
                if problem:
                    outcome, reason = "failed", problem
                    ex.spool.note(f"titan: {problem}")
                elif outcome == "failed" and result_json:  # the exception the function raised
                    reason = raised(result_json) or reason
            ex.exit = pb.AttemptExit(
                outcome=outcome,
                exit_code=done.exit_code,
                signal=done.signal,
                reason=reason,
                has_result=bool(result_json),
                result_json=result_json,
            )
        except Exception as exc:
            reason = f"cannot start: {str(exc) or type(exc).__name__}"
            log.warning("attempt %s: %s", ex.attempt_id, reason, exc_info=not str(exc))
            ex.spool.note(f"titan: {reason}")
            ex.exit = pb.AttemptExit(outcome="error", reason=reason)
        except asyncio.CancelledError:
            if ex.process is not None:
                ex.process.kill_now()
            ex.exit = pb.AttemptExit(outcome="cancelled", reason="worker stopping")
        finally:
            if timer is not None:
                timer.cancel()
            if watching is not None:
                watching.cancel()
            self.ports.release(ex.ports.values())  # only now: the process holding them is gone
            assert ex.exit is not None
            ex.exit.log_size = ex.spool.size
            ex.exit.ended_at = time.time()
            ex.spool.close()
            if ex.exit.has_result or ex.exit.outcome != "succeeded":
                ex.result_path.unlink(missing_ok=True)
            self._on_change()
            if not self.keep_workspaces:
                await asyncio.sleep(0)  # the send loop reports the end before the disk work starts
                if ex.private is not None:  # the job user's: rmtree never follows its links out
                    await asyncio.get_running_loop().run_in_executor(
                        None, shutil.rmtree, ex.private.root, True
                    )
                else:
                    await self._remove_workspace(ex.workspace)

    @staticmethod
    async def _remove_workspace(path: Path) -> None:
        """A workspace of a few files (most jobs leave nothing but their script's link) is removed
        at once; anything bigger by a thread, since a big tree can take seconds. The hand-off to a
        thread and back costs more than unlinking a file or two."""
        try:
            with os.scandir(path) as found:
                entries = list(itertools.islice(found, SMALL_WORKSPACE + 1))
            if len(entries) <= SMALL_WORKSPACE and not any(e.is_dir(follow_symlinks=False) for e in entries):
                for entry in entries:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                os.rmdir(path)
                return
        except FileNotFoundError:  # the workspace itself is gone
            return
        except OSError:
            pass  # e.g. a file that cannot be unlinked: rmtree does what it can
        await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, path, True)

    async def argv(self, ex: Execution) -> list[str]:
        spec = ex.assignment.spec
        script: Path | None = None
        if spec.project_hash:
            archive = await self.cache.get(spec.project_hash)
            await asyncio.get_running_loop().run_in_executor(
                None, unpack, archive, ex.workspace, self.project_limits
            )
            if spec.script_name:
                script = (ex.workspace / spec.script_name).resolve()
                if ex.workspace.resolve() not in script.parents or not script.is_file():
                    raise ValueError(f"script {spec.script_name!r} is not in the project")
        elif spec.script_hash:
            cached = await self.cache.get(spec.script_hash)
            name = os.path.basename(spec.script_name) or "script"
            if name in (".", ".."):
                name = "script"
            script = ex.workspace / name
            try:
                os.link(cached, script)
            except OSError:
                shutil.copy2(cached, script)
        if script is not None:
            if script.name.endswith(".py"):
                head = [sys.executable, "-u", str(script)]
            elif script.name.endswith(".sh"):
                head = ["bash", str(script)]
            else:
                head = [str(script)]
            return [*head, *(expand(arg, ex.ports) for arg in spec.args)]
        if not spec.command:
            raise ValueError("the job has neither a script nor a command")
        return [expand(arg, ex.ports) for arg in (*spec.command, *spec.args)]

    @staticmethod
    def title(ex: Execution, argv: list[str]) -> str:
        """What `ps` shows for a forked job: run, job, attempt (its id, which orphans.py reads) and
        script (or `-m MODULE`) with its arguments."""
        a = ex.assignment
        entry = python_entry(argv)
        script = ""
        if entry is not None:
            rest = argv[argv.index(entry[1]) + 1 :]
            head = os.path.basename(entry[1]) if entry[0] == "script" else f"-m {entry[1]}"
            script = " ".join([head, *rest])
        title = f"titan job {a.run_id}/{a.job_id} attempt {a.attempt} ({a.attempt_id}): {script}"
        return title[:TITLE_LENGTH]

    def _healthy(self, ex: Execution) -> None:
        ex.healthy = True
        self._on_change()

    def env(self, ex: Execution) -> dict[str, str]:
        a = ex.assignment
        env = dict(self.base_env)

        env.update(a.spec.env)
        env.update(a.env)
        env.update(a.secret_env)  # the values of the spec's secrets: here only, never on disk
        env.update(port_env(ex.ports))
        if self.gpus or a.gpus:  # after the spec's env: a job cannot reach devices it was not given
            visible = ",".join(a.gpus)
            env["CUDA_VISIBLE_DEVICES"] = visible
            env["NVIDIA_VISIBLE_DEVICES"] = visible or "none"
        env.update(
            TITAN_RUN_ID=a.run_id,
            TITAN_JOB_ID=a.job_id,
            TITAN_ATTEMPT=str(a.attempt),
            TITAN_ATTEMPT_ID=a.attempt_id,
            TITAN_ADDRESS=self.master,
            TITAN_TOKEN=a.credential,
            TITAN_RESULT_FILE=str(ex.result_path),
            TITAN_WORKSPACE=str(ex.workspace),
            TITAN_WORKER_ID=self.worker_id,
            TITAN_WORKER_NAME=self.worker_name,
            TITAN_PARENTS=",".join(a.spec.parents),
            TITAN_ITERATION=str(max(a.spec.iteration, 1)),
            PYTHONUNBUFFERED="1",
        )
        return env

    def read_result(self, ex: Execution) -> tuple[str, str]:
        """(result JSON, problem): the job's $TITAN_RESULT_FILE, checked for size and syntax.

        Opened without following a link, and only if it is a regular file (a FIFO would block the
        worker) that, for jobs of another user, that user owns: the job chose what is at that path."""
        try:
            fd = open_result(ex.result_path, self.job_user.uid if self.job_user is not None else None)
        except ValueError as exc:
            return "", str(exc)
        if fd is None:
            return "", ""
        with os.fdopen(fd, "rb") as fh:
            size = os.fstat(fd).st_size
            if size > MAX_RESULT_BYTES:
                return "", (
                    f"the job's result is {size} bytes, over the 1 MB limit; "
                    "publish large data with task.publish_artifact and return its name"
                )
            text = fh.read(MAX_RESULT_BYTES + 1).decode("utf-8", errors="replace")
        try:
            json.loads(text)
        except ValueError as exc:
            return "", f"the job's result file is not valid JSON ({exc})"
        return text, ""
