"""One attempt's OS process: its own process group, output into the spool, killed as a group.

Killing the group (not just the direct child) is what makes a timeout or cancel take the
grandchildren with it. When the main process exits, whatever it left running in its group is
killed too, and so is what escaped the group (a daemon in a session of its own: see orphans.py):
a batch job ends when its process does (long-lived work is what services are for). Its output is
read until every writer has closed it, for at most DRAIN_S after the main process exited, so a
process that still holds the job's stdout cannot keep the job from ending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from titan_runtime.worker.jobuser import JobUser
from titan_runtime.worker.launcher import Forker, LauncherUnavailable
from titan_runtime.worker.memory import JobMemory, MemoryEnforcer, enforcer
from titan_runtime.worker.memory import memory_limited as memory_limited  # re-exported: tests import it here
from titan_runtime.worker.orphans import Orphans
from titan_runtime.worker.reaper import GroupWatcher
from titan_runtime.worker.spool import Spool

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
#: How long output is still read after the main process exited and its group was killed.
DRAIN_S = 2.0


@dataclass
class ProcessExit:
    outcome: str  # succeeded failed timeout cancelled
    exit_code: int | None
    signal: str
    reason: str


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _kill_when_started(started: asyncio.Future[int]) -> None:
    """For a fork whose caller stopped waiting: the job must not outlive the worker that gave up."""
    if started.exception() is None:
        with contextlib.suppress(OSError):
            os.killpg(started.result(), signal.SIGKILL)


class JobProcess:
    def __init__(
        self,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        spool: Spool,
        on_output: Callable[[], None],
        watcher: GroupWatcher | None = None,
        memory_mb: int = 0,
        orphans: Orphans | None = None,
        attempt_id: str = "",
        title: str = "",
        user: JobUser | None = None,
        memory: MemoryEnforcer | None = None,
    ) -> None:
        """`orphans`: told of the process (so it is never taken for an orphan) and swept at its end;
        `attempt_id` names whose orphans those are (and its memory cgroup); `title`: the process title
        of a forked job; `user`: who an exec'd job runs as (None: the worker's user; a forked job is
        the launcher's); `memory`: what enforces `memory_mb` (None: this worker's `enforcer()`)."""
        self.user = user
        self.argv = argv
        self._watcher = watcher
        self._orphans = orphans
        self.attempt_id = attempt_id
        self.title = title
        self.memory_mb = memory_mb
        self._enforcer = memory
        self._memory: JobMemory | None = None  # the limit applied to an exec'd job with memory_mb
        self.cwd = cwd
        self.env = env
        self.spool = spool
        self._on_output = on_output
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.returncode: int | None = None
        self._exited = False
        self._done: asyncio.Future[ProcessExit] | None = None
        self._kill_outcome = ""
        self._kill_reason = ""
        self._kill_timer: asyncio.TimerHandle | None = None
        self._pidfd = -1
        self._watched = False
        self._readers: list[int] = []
        self._drain_timer: asyncio.TimerHandle | None = None

    async def start(self, launcher: Forker | None = None) -> int:
        """Start the process (raises OSError when it cannot be executed) and return its pid: forked
        by `launcher` when given and able, else exec'd."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        pipes = [os.pipe(), os.pipe()]
        # Read before the process can end: an exit heard first must still wait for the output.
        for (fd, _), stream in zip(pipes, (b"O", b"E"), strict=True):
            os.set_blocking(fd, False)
            loop.add_reader(fd, self._on_readable, fd, stream)
            self._readers.append(fd)
        writers = (pipes[0][1], pipes[1][1])
        try:
            if launcher is not None:
                try:
                    self.pid = await self._fork(launcher, writers)
                except LauncherUnavailable as exc:
                    log.info("%s; exec'ing the job instead", exc)
            if not self.pid:
                self._exec(writers)
        except BaseException:
            self._stop_reading()
            raise
        finally:
            for fd in writers:
                os.close(fd)
        kept = getattr(launcher, "keeps_process", False)  # a warm process: watched by its pool
        if self._watcher is not None and not self._exited and not kept:  # a forked job can be over already
            self._watcher.watch(self.pid)
            self._watched = True
        return self.pid

    async def _fork(self, launcher: Forker, writers: tuple[int, int]) -> int:
        with open(os.devnull, "rb") as devnull:
            started = launcher.spawn(
                self.argv, self.cwd, self.env, (devnull.fileno(), *writers), self._on_forked_exit, self.title
            )
        try:
            return await asyncio.shield(started)
        except asyncio.CancelledError:  # the worker is stopping: the job must not outlive this
            started.add_done_callback(_kill_when_started)
            raise

    def _exec(self, writers: tuple[int, int]) -> None:
        argv = self.argv
        if self.memory_mb:  # a cgroup made now, which the job joins as it starts (memory.py)
            enforcing = self._enforcer or enforcer()
            uid = None if self.user is None else self.user.uid
            self._memory = enforcing.limit(self.argv, self.memory_mb, self.attempt_id or "job", uid)
            argv = self._memory.argv
        start = subprocess.Popen if self.user is None else self.user.start  # the same, as the job user
        try:
            self.proc = start(
                argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=writers[0],
                stderr=writers[1],
                start_new_session=True,  # its own process group (and session): killpg reaches everything
                close_fds=True,
            )
        except BaseException:
            if self._memory is not None:
                self._memory.release()
            raise
        self.pid = self.proc.pid
        if self._orphans is not None:
            self._orphans.own(self.pid)
        loop = asyncio.get_running_loop()
        try:
            self._pidfd = os.pidfd_open(self.pid)
            loop.add_reader(self._pidfd, self._on_exit)
        except (AttributeError, OSError):
            loop.run_in_executor(None, self._wait_without_reaping, loop)

    def _on_forked_exit(self, returncode: int | None) -> None:
        """The launcher reaped the child (and killed its group), or died and took the status along."""
        if self._exited:
            return
        self._exited = True
        self.returncode = returncode
        self._finish_exit()

    def _on_readable(self, fd: int, stream: bytes) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.spool.feed(stream, data)
            self._on_output()
            return
        asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        self._readers.remove(fd)
        self._maybe_done()

    def _stop_reading(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in self._readers:
            loop.remove_reader(fd)
            os.close(fd)
        self._readers.clear()

    def _drained(self) -> None:
        """DRAIN_S after the main process: whoever still holds the output is not part of the job."""
        self._drain_timer = None
        if self._readers:
            self.spool.flush()
            self.spool.note(
                f"titan: the job ended {DRAIN_S:g}s ago; output its leftover processes write is not kept"
            )
            self._stop_reading()
            self._maybe_done()

    def _on_exit(self) -> None:
        if self._exited:
            return
        self._exited = True
        if self._pidfd >= 0:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        # The leader is a zombie until we reap it, so its group id cannot have been reused yet:
        # kill what it left behind, then reap.
        self._killpg(signal.SIGKILL)
        assert self.proc is not None
        self.returncode = self.proc.wait()
        if self._memory is not None:  # what escaped the group dies with its cgroup
            self._memory.release()
        if self._orphans is not None:
            self._orphans.disown(self.pid)
        self._finish_exit()

    def _finish_exit(self) -> None:
        if self._watcher is not None and self._watched:
            self._watcher.forget(self.pid)
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        if self._orphans is not None:
            self._orphans.sweep(ended=self.attempt_id)  # what escaped its group goes with it
        if self._readers:
            self._drain_timer = asyncio.get_running_loop().call_later(DRAIN_S, self._drained)
        self._maybe_done()

    def _maybe_done(self) -> None:
        if not self._exited or self._readers or self._done is None or self._done.done():
            return
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        self.spool.flush()
        self._on_output()
        self._done.set_result(self._describe(self.returncode))

    def _describe(self, rc: int | None) -> ProcessExit:
        if rc is None:
            # Not the job's fault: handed back, so the master runs it again (like an attempt lost
            # with its worker) instead of counting a failure.
            return ProcessExit(
                "cancelled", None, "", "the Python launcher exited: the job was killed, its status lost"
            )
        code = rc if rc >= 0 else None
        sig = signal_name(-rc) if rc < 0 else ""
        if self._kill_outcome:
            return ProcessExit(self._kill_outcome, code, sig, self._kill_reason)
        if rc == 0:
            return ProcessExit("succeeded", 0, "", "")
        reason = f"killed by {sig}" if sig else f"exit code {rc}"
        if self._memory is not None:  # says whether the out-of-memory killer acted
            reason = self._memory.explain(reason, sigkilled=rc == -signal.SIGKILL)
        elif rc == -signal.SIGKILL:
            reason = "killed by SIGKILL, likely out of memory"
        return ProcessExit("failed", code, sig, reason)

    async def wait(self) -> ProcessExit:
        assert self._done is not None
        return await asyncio.shield(self._done)

    @property
    def running(self) -> bool:
        return self.pid != 0 and not self._exited

    def terminate(self, outcome: str, reason: str, grace: float) -> None:
        """SIGTERM the whole group now, SIGKILL it after `grace` seconds if it is still there."""
        if not self.running or self._kill_outcome:
            return
        self._kill_outcome, self._kill_reason = outcome, reason
        self._killpg(signal.SIGTERM)
        self._kill_timer = asyncio.get_running_loop().call_later(
            max(grace, 0.0), self._killpg, signal.SIGKILL
        )

    def kill_now(self) -> None:
        self._killpg(signal.SIGKILL)

    def _killpg(self, sig: int) -> None:
        if self.pid:
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
