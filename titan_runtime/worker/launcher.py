"""The worker's side of the Python launcher (launcher_main.py): start it, ask it for jobs, hear exits.

Python jobs (`{python} [-u] SCRIPT.py ...` and `{python} [-u] -m MODULE ...`) are forked from an
interpreter that has already started instead of starting a new one each: on a no-op script that is
~1 ms of CPU instead of ~17 (docs/performance.md). Only jobs that cannot tell the difference go this
way (`compatible`); anything else, and every job when the launcher is off (`--python-launcher
exec`) or gone, is started with exec as before.

With `--preload PACKAGES` the worker runs a second launcher that has imported them: a `-m` job of
one of those packages (`{python} -m dagster api execute_step`) starts from it, with what takes a
cold interpreter a second to import already there. A job may also ask for packages itself
(`JobSpec.preload`: titan_executor's steps ask for Dagster): the worker starts a launcher for that
set when first asked and keeps it. Other jobs keep the plain launcher, whose children find
`sys.modules` as a fresh interpreter leaves it (`Launchers.pick`).
"""

from __future__ import annotations

import array
import asyncio
import collections
import contextlib
import logging
import marshal
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from titan_runtime.core.names import MODULE_PATTERN
from titan_runtime.worker.jobuser import JobUser

log = logging.getLogger(__name__)

MAIN = Path(__file__).with_name("launcher_main.py")
#: The launcher's interpreter settles these at start-up, so a job that sets any other value is
#: exec'd: its interpreter must read them itself.
STARTUP_ENV_PREFIXES = ("PYTHON", "LC_")
STARTUP_ENV_NAMES = frozenset({"LANG", "LANGUAGE"})
#: Launchers started for the packages jobs ask to preload (beyond --preload's), kept for the
#: worker's life: past it, such jobs fork from the plain launcher.
MAX_ON_DEMAND = 4
#: Seconds a launcher may take to import its packages: past them it is stopped, and the jobs
#: waiting for it are exec'd (a package that hangs at import must not hold jobs for ever).
PRELOAD_TIMEOUT = 120.0


class Forker(Protocol):
    """What starts a job's process without exec: the Python launcher (a forked child), or the
    function pool (a task in a warm process, fnpool.py). JobProcess runs either the same way."""

    def spawn(
        self,
        argv: list[str],
        cwd: Path,
        env: Mapping[str, str],
        fds: tuple[int, int, int],
        on_exit: Callable[[int | None], None],
        title: str = "",
    ) -> asyncio.Future[int]: ...


class LauncherUnavailable(Exception):
    """The launcher cannot take this job (it is gone, or refused it): exec it instead."""


def supported() -> bool:
    """Forking needs Linux's pidfds (to hear of exits without being the parent)."""
    return sys.platform == "linux" and hasattr(os, "pidfd_open") and hasattr(socket, "CMSG_SPACE")


def _startup_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(STARTUP_ENV_PREFIXES) or k in STARTUP_ENV_NAMES}


def python_entry(argv: list[str]) -> tuple[str, str] | None:
    """("script", PATH) or ("module", NAME) for a job the launcher could start (the worker's own
    interpreter, `-u` or not, then a script or `-m MODULE`); None for anything else."""
    if not argv or argv[0] != sys.executable:
        return None
    rest = argv[2:] if argv[1:2] == ["-u"] else argv[1:]
    if rest[:1] == ["-m"]:
        return ("module", rest[1]) if len(rest) >= 2 and MODULE_PATTERN.match(rest[1]) else None
    if rest and not rest[0].startswith("-"):
        return ("script", rest[0])
    return None


def start_with_socket(
    argv: Callable[[int], list[str]], env: Mapping[str, str], user: JobUser | None, kind: int
) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start a helper of the worker's (a launcher, a warm process) with one end of a socket pair
    (`argv(fd)` names its end); ours, non-blocking. It runs as the job user if there is one (the
    kernel sets it as it starts, like an exec'd job's), in "/" (the worker's directory may be
    closed to that user), in a session of its own (a Ctrl-C in the worker's terminal does not
    reach it; killing its group kills what it started)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, kind)
    try:
        start = subprocess.Popen if user is None else user.start
        proc = start(
            argv(theirs.fileno()),
            cwd="/",
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    ours.setblocking(False)
    return proc, ours


class PythonLauncher:
    """One launcher process per worker, started with the environment every job starts from.

    With a job user it runs as that user (the kernel sets it as it starts, like an exec'd job's), so
    every child it forks is that user without dropping anything itself; it is non-dumpable all the
    same, so the jobs, of its user, cannot read the environments it receives."""

    def __init__(
        self, env: Mapping[str, str], user: JobUser | None = None, preload: tuple[str, ...] = ()
    ) -> None:
        self.preload = preload
        self._env = {**env, "PYTHONUNBUFFERED": "1"}
        self._startup = _startup_env(self._env)
        self._proc, ours = start_with_socket(
            lambda fd: [sys.executable, "-u", str(MAIN), str(fd), *preload],
            self._env,
            user,
            socket.SOCK_SEQPACKET,
        )
        self._sock = ours
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(ours.fileno(), self._on_readable)
        self._starting: collections.deque[tuple[asyncio.Future[int], Callable[[int | None], None]]] = (
            collections.deque()
        )
        self._exits: dict[int, Callable[[int | None], None]] = {}
        self.alive = True
        self.ready = not preload  # its packages imported (it answers nothing before)
        self._deadline = self._loop.call_later(PRELOAD_TIMEOUT, self._too_slow) if preload else None

    @property
    def pid(self) -> int:
        return self._proc.pid

    def compatible(self, argv: list[str], env: Mapping[str, str]) -> bool:
        """Whether a job run as `argv` with `env` would start exactly as the launcher did (its
        interpreter settings, PYTHONUNBUFFERED=1 included, are the launcher's)."""
        return self.alive and python_entry(argv) is not None and _startup_env(env) == self._startup

    def spawn(
        self,
        argv: list[str],
        cwd: Path,
        env: Mapping[str, str],
        fds: tuple[int, int, int],
        on_exit: Callable[[int | None], None],
        title: str = "",
    ) -> asyncio.Future[int]:
        """Ask for a child; the future gives its pid. `on_exit(returncode)` follows when it has
        exited, been reaped, and its group killed (None: the launcher died first, status unknown).
        `title`, when given, is the child's process title (what `ps` shows)."""
        if not self.alive:
            raise LauncherUnavailable("the Python launcher has exited")
        request = marshal.dumps((argv, str(cwd), dict(env), title))
        fd_bytes = array.array("i", fds).tobytes()
        try:
            self._sock.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd_bytes)])
        except OSError as exc:  # e.g. a request over the socket's size limit: exec does not mind
            raise LauncherUnavailable(f"the Python launcher cannot take the job: {exc}") from exc
        started: asyncio.Future[int] = self._loop.create_future()
        self._starting.append((started, on_exit))
        return started

    def _on_readable(self) -> None:
        try:
            data = self._sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._gone()
            return
        message = marshal.loads(data)
        if message[0] == "preloaded":
            self.ready = True
            if self._deadline is not None:
                self._deadline.cancel()
            for module, why in message[1]:
                log.warning(
                    "the Python launcher could not preload %s (%s): its jobs import it themselves",
                    module,
                    why,
                )
            return
        if message[0] == "exit":
            _, pid, status = message
            on_exit = self._exits.pop(pid, None)
            if on_exit is not None:
                on_exit(os.waitstatus_to_exitcode(status))
            return
        started, on_exit = self._starting.popleft()
        if message[0] == "pid":
            self._exits[message[1]] = on_exit  # even if the caller stopped waiting: the job exists
            if not started.done():
                started.set_result(message[1])
        elif not started.done():
            started.set_exception(LauncherUnavailable(f"the Python launcher could not fork: {message[1]}"))

    def _too_slow(self) -> None:
        """Its packages took longer than PRELOAD_TIMEOUT to import: stop it (it forked nothing yet),
        and exec the jobs waiting for it."""
        if self.ready or not self.alive:
            return
        log.warning(
            "the Python launcher preloading %s did not finish in %.0f s; its jobs are exec'd",
            ",".join(self.preload),
            PRELOAD_TIMEOUT,
        )
        self._gone()
        self._proc.kill()

    def _gone(self) -> None:
        """The launcher died: its children's statuses died with it. Kill their groups, say so."""
        if not self.alive:
            return
        self.alive = False
        log.warning("the Python launcher (pid %d) exited; Python jobs are exec'd from now on", self.pid)
        self._loop.remove_reader(self._sock.fileno())
        while self._starting:
            started, _ = self._starting.popleft()
            if not started.done():
                started.set_exception(LauncherUnavailable("the Python launcher has exited"))
        exits, self._exits = self._exits, {}
        for pid, on_exit in exits.items():
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            on_exit(None)

    def close(self) -> None:
        """Close the socket (the launcher kills what it still runs and leaves) and reap it."""
        if self._deadline is not None:
            self._deadline.cancel()
        if self.alive:
            self.alive = False
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class Launchers:
    """The worker's launchers: the plain one; with `preload` (the worker's `--preload`) one that has
    imported those packages, for `-m` jobs of them; and one per package set jobs ask for, started
    when first asked (at most MAX_ON_DEMAND). Any may be missing (off, or failed to start)."""

    def __init__(
        self,
        plain: PythonLauncher | None,
        preloaded: PythonLauncher | None = None,
        start: Callable[[tuple[str, ...]], PythonLauncher | None] | None = None,
    ) -> None:
        self.plain = plain
        self.preloaded = preloaded
        self._start = start  # None: no launcher is started on demand
        self.asked: dict[tuple[str, ...], PythonLauncher | None] = {}

    @classmethod
    def start(
        cls,
        env: Mapping[str, str],
        user: JobUser | None,
        preload: tuple[str, ...],
        on_start: Callable[[PythonLauncher], None] = lambda _: None,
    ) -> Launchers:
        """Start them; one that cannot start is said in the log and left out (its jobs are exec'd).
        `on_start` is told of each launcher started, now or later."""

        def one(modules: tuple[str, ...]) -> PythonLauncher | None:
            try:
                started = PythonLauncher(env, user, modules)
            except OSError as exc:
                log.warning("cannot start the Python launcher (%s); its Python jobs are exec'd", exc)
                return None
            on_start(started)
            return started

        return cls(one(()), one(preload) if preload else None, one)

    @property
    def all(self) -> list[PythonLauncher]:
        found = [self.plain, self.preloaded, *self.asked.values()]
        return [launcher for launcher in found if launcher is not None]

    def pick(
        self, argv: list[str], env: Mapping[str, str], preload: tuple[str, ...] = ()
    ) -> PythonLauncher | None:
        """The launcher to fork this job from, or None to exec it: a job that asks for packages
        from a launcher that imported exactly those (started now if need be); a `-m` job of a
        package of `--preload` from the preloading one; any other Python job from the plain one."""
        entry = python_entry(argv)
        if entry is None:
            return None
        chosen = None
        if preload:
            chosen = self._asked(tuple(preload))
        elif entry[0] == "module" and self.preloaded is not None:
            packages = {m.partition(".")[0] for m in self.preloaded.preload}
            if entry[1].partition(".")[0] in packages:
                chosen = self.preloaded
        for launcher in (chosen, self.plain):
            if launcher is not None and launcher.compatible(argv, env):
                return launcher
        return None

    def _asked(self, preload: tuple[str, ...]) -> PythonLauncher | None:
        if self.preloaded is not None and self.preloaded.preload == preload:
            return self.preloaded
        if preload not in self.asked:
            if self._start is None or len(self.asked) >= MAX_ON_DEMAND:
                return None
            self.asked[preload] = self._start(preload)
        return self.asked[preload]

    def close(self) -> None:
        for launcher in self.all:
            launcher.close()
