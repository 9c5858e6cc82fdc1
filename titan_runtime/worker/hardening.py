"""Keep a worker's memory and environment from the jobs it runs (and tie its life to its parent's).

Jobs run as the worker's OS user (unless it runs them as another), and a process may read the
memory and /proc/PID/environ of any other process of its user. A process that has made itself
non-dumpable (prctl PR_SET_DUMPABLE 0) is owned by root in /proc from then on: its memory, environ,
fds and maps are closed to its user's other processes, core dumps included. The flag is inherited
by fork and reset by exec, so a job the worker execs is an ordinary process again.
(The Python launcher does the same for itself; it cannot import this module, see launcher_main.py.)
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4


def make_undumpable() -> bool:
    """True when this process is now closed to its user's other processes (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def exit_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGINT this worker when the process that started it dies (`titan-runtime up`)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGINT)
