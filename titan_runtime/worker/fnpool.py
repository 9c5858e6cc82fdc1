"""The worker's warm Python processes for function tasks (fn_main.py), kept between tasks.

A function task (JobSpec.kind "function") is not a process of its own: it is handed to a warm
process that has already started, imported cloudpickle and, after its first task, whatever the
function imports. Each process runs one task at a time and serves one run only (a task can leave
anything in its interpreter, and the next task finds it: tasks of other runs must not). A process
is retired after MAX_TASKS tasks, when its memory passes MAX_RSS, after IDLE_SECONDS unused, or
when an idle slot is wanted for another run. A cancelled or timed-out task is stopped by killing
its process, as any job's group is killed.

To `JobProcess` a task's process looks like a forked job (the same `spawn` as the Python
launcher's): its pid, and an exit code when the task ends. So logs, timeouts, cancels and reports
are the same as every job's.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import logging
import marshal
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from titan_runtime.worker.jobuser import JobUser
from titan_runtime.worker.launcher import start_with_socket, supported
from titan_runtime.worker.orphans import Orphans
from titan_runtime.worker.reaper import GroupWatcher

log = logging.getLogger(__name__)

#: Tasks a process runs before it is retired (what leaks, leaks only so long).
MAX_TASKS = 1000
#: Resident memory (bytes) past which a process is retired after its task.
MAX_RSS = 1024 * 1024 * 1024
#: Seconds an idle process is kept.
IDLE_SECONDS = 60.0
#: Largest answer a warm process sends (its answers are a few bytes).
MAX_ANSWER = 4096
#: Seconds a new process may take to start (import cloudpickle and Titan's client).
START_TIMEOUT = 60.0


class PoolUnavailable(Exception):
    """No warm process could take the task."""


class WarmProcess:
    """One fn_main process: its socket, and the task it runs (`on_exit` while busy)."""

    def __init__(
        self, run_id: str, env: Mapping[str, str], user: JobUser | None, gone: Callable[[WarmProcess], None]
    ) -> None:
        self.run_id = run_id
        self.proc, ours = start_with_socket(
            lambda fd: [sys.executable, "-u", "-m", "titan_runtime.worker.fn_main", str(fd)],
            {**env, "PYTHONUNBUFFERED": "1"},
            user,
            socket.SOCK_STREAM,
        )
        self.sock = ours
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(ours.fileno(), self._on_readable)
        self._buffer = b""
        self._gone = gone
        self.ready: asyncio.Future[None] = self._loop.create_future()
        self.on_exit: Callable[[int | None], None] | None = None
        self.tasks = 0
        self.rss = 0
        self.alive = True
        self.idle_timer: asyncio.TimerHandle | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def send(
        self, request: bytes, fds: tuple[int, int, int], on_exit: Callable[[int | None], None]
    ) -> None:
        """Hand it a task: `on_exit(code)` when it ends (a negative signal number if the process died)."""
        frame = len(request).to_bytes(4, "big") + request
        self.on_exit = on_exit
        sent = self.sock.sendmsg(
            [frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        )
        if sent < len(frame):
            await self._loop.sock_sendall(self.sock, frame[sent:])

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._died()
            return
        self._buffer += data
        while len(self._buffer) >= 4:
            size = int.from_bytes(self._buffer[:4], "big")
            if size > MAX_ANSWER:
                self._died()  # not what fn_main sends: a task wrote on the socket
                return
            if len(self._buffer) < 4 + size:
                return
            frame, self._buffer = self._buffer[4 : 4 + size], self._buffer[4 + size :]
            try:  # JSON, not marshal: user code runs in that process and could write anything
                kind, *rest = json.loads(frame)
                if kind == "ready" and not rest:
                    if not self.ready.done():
                        self.ready.set_result(None)
                elif kind == "exit" and self.on_exit is not None:
                    code, rss = int(rest[0]), int(rest[1])
                    self.rss, self.tasks = rss, self.tasks + 1
                    on_exit, self.on_exit = self.on_exit, None
                    on_exit(code)
                else:
                    raise ValueError(f"unexpected {kind!r}")
            except (ValueError, TypeError, IndexError) as exc:
                log.warning("warm Python process %d said what it should not (%s): stopped", self.pid, exc)
                self._died()
                return

    def _died(self) -> None:
        """It exited (a cancel killed it, it crashed), or it broke the protocol: kill what is left
        of its group, reap it, and end its task saying how."""
        if not self.alive:
            return
        self.alive = False
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        with contextlib.suppress(OSError):  # unreaped, its pid (and group id) is still its own
            os.killpg(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait()
        if not self.ready.done():
            self.ready.set_exception(
                PoolUnavailable(f"the warm Python process exited ({code}) before it was ready")
            )
        on_exit, self.on_exit = self.on_exit, None
        self._gone(self)
        if on_exit is not None:
            on_exit(code if code < 0 else (code or 1))

    def close(self) -> None:
        """Close its socket (it leaves at EOF) and reap it; kill it if it does not leave."""
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        if self.alive:
            self.alive = False
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class FunctionPool:
    """The warm processes of a worker, by run. `on_start(pid)` and `on_end(pid)` tell the worker of
    each process (its reaper kills them if the worker dies)."""

    def __init__(
        self,
        env: Mapping[str, str],
        user: JobUser | None = None,
        on_start: Callable[[int], None] = lambda _: None,
        on_end: Callable[[int], None] = lambda _: None,
        max_tasks: int = MAX_TASKS,
        max_rss: int = MAX_RSS,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self._env = dict(env)
        self._user = user
        self._on_start = on_start
        self._on_end = on_end
        self.max_tasks = max_tasks
        self.max_rss = max_rss
        self.idle_seconds = idle_seconds
        self.idle: dict[str, list[WarmProcess]] = {}
        self.busy: set[WarmProcess] = set()
        self.started = 0  # processes started so far (the tests and the benchmark read it)

    @classmethod
    def for_worker(
        cls, env: Mapping[str, str], user: JobUser | None, reaper: GroupWatcher, orphans: Orphans
    ) -> FunctionPool | None:
        """A worker's pool, each process told to its reaper (killed if the worker dies) and owned
        (never taken for a job's orphan); None where warm processes cannot run (not Linux)."""
        if not supported():
            return None

        def started(pid: int) -> None:
            reaper.watch(pid)
            orphans.own(pid)

        def ended(pid: int) -> None:
            reaper.forget(pid)
            orphans.disown(pid)

        return cls(env, user, on_start=started, on_end=ended)

    def call(self, run_id: str, call: str, inputs: Mapping[str, str]) -> FunctionCall:
        return FunctionCall(self, run_id, call, dict(inputs))

    async def take(self, run_id: str) -> WarmProcess:
        """An idle process of the run, or a new one (retiring the oldest idle one of another run,
        so that idle processes hold no more memory than before)."""
        idle = self.idle.get(run_id)
        while idle:
            process = idle.pop()
            if process.alive:
                if process.idle_timer is not None:
                    process.idle_timer.cancel()
                self.busy.add(process)
                return process
        others = [p for run, found in self.idle.items() if run != run_id for p in found]
        if others:
            self._retire(others[0])
        try:
            process = WarmProcess(run_id, self._env, self._user, self._gone)
        except OSError as exc:
            raise PoolUnavailable(f"cannot start a warm Python process: {exc}") from exc
        self.started += 1
        self._on_start(process.pid)
        self.busy.add(process)
        try:
            await asyncio.wait_for(asyncio.shield(process.ready), START_TIMEOUT)
        except BaseException:
            self.busy.discard(process)
            self._retire(process)
            raise
        return process

    def done(self, process: WarmProcess) -> None:
        """Its task ended: keep it for the run's next task, or retire it."""
        self.busy.discard(process)
        if not process.alive:
            return
        if process.tasks >= self.max_tasks or process.rss > self.max_rss:
            self._retire(process)
            return
        self.idle.setdefault(process.run_id, []).append(process)
        process.idle_timer = asyncio.get_running_loop().call_later(self.idle_seconds, self._retire, process)

    def _retire(self, process: WarmProcess) -> None:
        found = self.idle.get(process.run_id)
        if found and process in found:
            found.remove(process)
            if not found:
                del self.idle[process.run_id]
        process.close()
        self._on_end(process.pid)

    def _gone(self, process: WarmProcess) -> None:
        self.busy.discard(process)
        found = self.idle.get(process.run_id)
        if found and process in found:
            found.remove(process)
        self._on_end(process.pid)

    def close(self) -> None:
        for process in [*self.busy, *(p for found in self.idle.values() for p in found)]:
            process.close()
            self._on_end(process.pid)
        self.idle.clear()
        self.busy.clear()


class FunctionCall:
    """One task for the pool, with the Python launcher's `spawn`, so JobProcess runs it as it runs
    a forked job. `keeps_process`: the pid outlives the task (JobProcess does not watch it)."""

    keeps_process = True

    def __init__(self, pool: FunctionPool, run_id: str, call: str, inputs: dict[str, str]) -> None:
        self.pool = pool
        self.run_id = run_id
        self.call = call
        self.inputs = inputs

    def spawn(
        self,
        argv: list[str],
        cwd: Path,
        env: Mapping[str, str],
        fds: tuple[int, int, int],
        on_exit: Callable[[int | None], None],
        title: str = "",
    ) -> asyncio.Future[int]:
        # The fds are the caller's until this returns: duplicated now, closed once sent.
        own = tuple(os.dup(fd) for fd in fds)
        request = marshal.dumps((self.call, self.inputs, str(cwd), dict(env)))
        return asyncio.ensure_future(self._start(request, own, on_exit))

    async def _start(
        self, request: bytes, fds: tuple[int, ...], on_exit: Callable[[int | None], None]
    ) -> int:
        try:
            process = await self.pool.take(self.run_id)

            def ended(code: int | None) -> None:
                self.pool.done(process)
                on_exit(code)

            try:
                await process.send(request, fds, ended)  # type: ignore[arg-type]
            except OSError as exc:
                self.pool.done(process)
                raise PoolUnavailable(f"cannot hand the task to its warm process: {exc}") from exc
            return process.pid
        finally:
            for fd in fds:
                os.close(fd)
