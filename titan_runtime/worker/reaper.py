"""The reaper: a tiny process that kills the worker's jobs if the worker itself dies.

A worker killed with SIGKILL cannot clean up, and its jobs run in their own process groups (so that
a cancel reaches grandchildren), so nothing would stop them: they would keep running and holding
ports. The worker therefore starts this helper first and tells it, over a pipe, each process group
it starts and ends. The helper ignores signals and waits for the pipe to close; when it does (the
worker exited, however it died), it SIGKILLs every group still registered and exits.

It reads the pipe five times a second, not at every message: woken twice per job, it would compete
for a CPU at the moment a job starts and ends. The pipe's 64 KiB hold some 4,000 messages, far more
than a worker starts and ends jobs in 0.2 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Protocol

REAPER_SOURCE = r"""
import os, select, signal
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)
os.set_blocking(0, False)
hangup = select.poll()
hangup.register(0, 0)  # no events asked: poll wakes only when the worker's end closes (POLLHUP)
groups, buf, open_ = set(), b"", True
while open_:
    hangup.poll(200)
    while True:
        try:
            data = os.read(0, 65536)
        except BlockingIOError:  # drained (EINTR is retried by Python itself)
            break
        if not data:
            open_ = False
            break
        buf += data
    *lines, buf = buf.split(b"\n")
    for line in lines:
        if line[:1] == b"+":
            groups.add(int(line[1:]))
        elif line[:1] == b"-":
            groups.discard(int(line[1:]))
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class GroupWatcher(Protocol):
    """Told about each process group, so it can kill them if the worker dies (the Reaper)."""

    def watch(self, pgid: int) -> None: ...

    def forget(self, pgid: int) -> None: ...


class Reaper:
    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-S", "-E", "-c", REAPER_SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the worker's terminal does not reach it
            close_fds=True,
        )
        assert self._proc.stdin is not None
        self._fd = self._proc.stdin.fileno()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _send(self, line: bytes) -> None:
        try:
            os.write(self._fd, line)
        except OSError:
            pass  # the reaper is gone: nothing better to do than run on

    def watch(self, pgid: int) -> None:
        self._send(b"+%d\n" % pgid)

    def forget(self, pgid: int) -> None:
        self._send(b"-%d\n" % pgid)

    def close(self) -> None:
        """Normal shutdown: the worker has stopped its jobs; the reaper exits at the pipe's end."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
