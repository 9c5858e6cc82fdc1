"""Processes a job leaves behind come to the worker, and end with the job.

A job's processes run in its own process group, which a cancel, a timeout or the job's end kills
whole. A process that starts a session of its own (`setsid`, a daemon's double fork) leaves that
group: it used to outlive its job, and while it held the job's stdout, the job never ended. The
worker is therefore a child subreaper (PR_SET_CHILD_SUBREAPER): a process whose parent dies is
re-parented to the worker rather than to init, so every escaped process becomes a child of the
worker the moment it is orphaned, where a sweep finds it.

A sweep (at each job's end, and every second while jobs run or orphans are kept) looks at the
worker's children that it did not start itself: a dead one is reaped; a live one is attributed
to its attempt by the TITAN_ATTEMPT_ID in its environment, or by the attempt id in its process
title (a forked Python job's children inherit the title, not an environment of their own). It is
killed, with its process group, once that attempt has ended. One that names no attempt is kept
only while every attempt that was running when it was first seen still runs. While one is kept,
its group is registered with the worker's reaper (reaper.py), so that it dies with the worker too.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable

from titan_runtime.worker.reaper import GroupWatcher

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux 3.4+). False if not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children() -> list[int]:
    """The pids of this process's children, from /proc (every thread's list)."""
    found: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children", "rb") as fh:
                found.extend(int(pid) for pid in fh.read().split())
        except OSError:
            continue
    return found


def _read(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as fh:
            return fh.read(1 << 20)
    except OSError:
        return b""


def attempt_of(pid: int, attempts: Iterable[str]) -> str:
    """Which of `attempts` the process belongs to, by its environment or its title; "" if none."""
    candidates = list(attempts)
    if not candidates:
        return ""
    environ = b"\0" + _read(pid, "environ")
    for attempt_id in candidates:
        if b"\0TITAN_ATTEMPT_ID=" + attempt_id.encode() + b"\0" in environ:
            return attempt_id
    cmdline = _read(pid, "cmdline")
    for attempt_id in candidates:
        if f"({attempt_id})".encode() in cmdline:
            return attempt_id
    return ""


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _kill(pid: int) -> None:
    """SIGKILL the process and, if it leads one, its process group (what it started after setsid)."""
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


class Orphans:
    """The worker's children it did not start: reaped when dead, killed when their job is over."""

    def __init__(self, running: Callable[[], set[str]], watcher: GroupWatcher | None = None) -> None:
        """`running()`: the ids of the attempts whose processes are running now; `watcher` is told
        the groups of the orphans kept alive (the reaper kills them if the worker dies)."""
        self._running = running
        self.watcher = watcher
        self._own: set[int] = set()  # children the worker started: job leaders, the reaper, the launcher
        self._kept: dict[int, set[str]] = {}  # live orphan -> the attempts it may belong to
        self._dying: set[int] = set()  # killed, not reaped yet
        self.enabled = become_subreaper()

    def own(self, pid: int) -> None:
        self._own.add(pid)

    def disown(self, pid: int) -> None:
        self._own.discard(pid)

    @property
    def busy(self) -> bool:
        """Whether a periodic sweep has anything to do: orphans kept, or processes they could come from."""
        return bool(self._kept or self._dying) or bool(self._running())

    def sweep(self, ended: str = "") -> int:
        """Reap dead orphans and kill those whose attempts are over (`ended` just ended: its own
        escaped processes go now). Returns how many were killed."""
        if not self.enabled:
            return 0
        running = self._running() - {ended}
        killed = 0
        seen = set()
        for pid in children():
            if pid in self._own:
                continue
            seen.add(pid)
            if self._reaped(pid):
                self._forget(pid)
                self._dying.discard(pid)
                continue
            if pid in self._dying:
                continue
            owner = attempt_of(pid, running | ({ended} if ended else set()))
            candidates = {owner} if owner else self._kept.get(pid, running)
            candidates = candidates & running
            if candidates:
                if pid not in self._kept and self.watcher is not None and _leads_group(pid):
                    self.watcher.watch(pid)
                self._kept[pid] = candidates
                continue
            log.info("killing process %d, left behind by %s", pid, owner or "a job that has ended")
            _kill(pid)
            self._forget(pid)
            self._dying.add(pid)
            killed += 1
        for pid in (set(self._kept) | self._dying) - seen:  # gone: reaped by someone else after all
            self._forget(pid)
            self._dying.discard(pid)
        return killed

    def _forget(self, pid: int) -> None:
        if self._kept.pop(pid, None) is not None and self.watcher is not None:
            self.watcher.forget(pid)

    @staticmethod
    def _reaped(pid: int) -> bool:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        return done == pid
