"""One master per data dir: an exclusive flock on `master.lock`, held for the master's lifetime.

Two masters on one store would each believe they own its workers and jobs: the second declares the
first one's workers dead and deletes its master.json on exit. The second therefore stops before it
touches anything, naming the owner. The kernel drops the lock when its holder dies, however it dies,
so a master killed with -9 never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from titan_runtime.config import ConfigError

LOCK_FILE = "master.lock"


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _read(fd)
            os.close(fd)
            pid = owner.get("pid", "?")
            where = f", listening on {owner['address']}" if owner.get("address") else ""
            raise ConfigError(
                f"the data dir {data_dir} is in use by another master (pid {pid}{where}); "
                "stop that one first, or give this one another --data-dir"
            ) from None
        self._fd = fd
        self.describe()

    def describe(self, address: str = "") -> None:
        """Write who holds the lock, for the next master that finds it taken (what a full disk
        leaves of it: nothing, and the next master says so)."""
        data = json.dumps({"pid": os.getpid(), "address": address}).encode()
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Unlock (the file stays: removing it could let two masters lock two different files)."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = -1


def _read(fd: int) -> dict[str, object]:
    try:
        found = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
