"""Attempt logs on the master: append-only files, one per attempt, read and followed by offset.

The bytes are exactly the worker's spool file for that attempt (records of
"<unix ms> <O|E> <line>\n"), so a byte offset means the same thing on both sides and a worker
that reconnects resends from the master's size. Nothing here holds a log in memory: a job that
prints 100 MB costs disk, not RAM.

While the data dir's disk is below its watermark, appends are refused: the log is cut where it
is (offsets stay the worker's), and a reader is told with a note where output is missing. The
store, on the same disk, keeps the room it needs to commit the job's end.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from titan_runtime.core.model import ID_PATTERN
from titan_runtime.core.retention import StoredFile
from titan_runtime.diskspace import WRITE_SLICE, DiskGuard, human

log = logging.getLogger("titan.master")

READ_CHUNK = 1024 * 1024
#: In a run's log folder once retention removed some of its logs: says why, to their readers.
REMOVED_MARK = ".removed"


def note_record(text: str) -> bytes:
    """A line from Titan itself, in the log's own record format (see worker/spool.py)."""
    return b"%d T %s\n" % (int(time.time() * 1000), text.encode())


class LogStore:
    def __init__(self, root: Path, disk: DiskGuard | None = None) -> None:
        self.root = root.resolve()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._disk = disk
        self._fds: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self.cut: dict[str, str] = {}  # attempt id -> why its log stops short (while the master runs)
        #: Told the count of new bytes each append received (metrics.py), when set.
        self.on_received: Callable[[int], None] | None = None

    def path(self, run_id: str, job_id: str, number: int) -> Path:
        """The log file of attempt `number` of RUN/JOB, refusing anything that leaves the log dir."""
        if not (ID_PATTERN.match(run_id) and ID_PATTERN.match(job_id)) or number < 1:
            raise ValueError(f"invalid log reference {run_id}/{job_id} attempt {number}")
        path = (self.root / run_id / f"{job_id}.{number}.log").resolve()
        if path.parent.parent != self.root:
            raise ValueError(f"invalid log reference {run_id}/{job_id}")
        return path

    def size(self, attempt_id: str, path: Path) -> int:
        size = self._sizes.get(attempt_id)
        if size is None:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                size = 0
        return size

    def append(self, attempt_id: str, path: Path, offset: int, data: bytes) -> int:
        """Write `data` found at `offset` of the attempt's log; overlap from a resend is skipped.

        Returns the log's size afterwards. Data past a gap is refused (the worker resends from the
        size the master reports when it reconnects).
        """
        size = self.size(attempt_id, path)
        if offset > size:
            return size
        data = data[size - offset :]
        if not data:
            return size
        if self.on_received is not None:
            self.on_received(len(data))
        fd = self._fds.get(attempt_id)
        if fd is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._fds[attempt_id] = fd
        for start in range(0, len(data), WRITE_SLICE):
            piece = data[start : start + WRITE_SLICE]
            if self._disk is not None and not self._disk.has_room(len(piece)):
                self._cut(attempt_id, path, size, "the master's disk was nearly full")
                break
            try:
                written = os.write(fd, piece)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                written = 0
            if written < len(piece):  # the disk is full after all: keep no half-written piece
                os.ftruncate(fd, size)
                self._cut(attempt_id, path, size, "the master's disk was full")
                break
            size += written
        self._sizes[attempt_id] = size
        self._notify(attempt_id)
        return size

    def _cut(self, attempt_id: str, path: Path, size: int, why: str) -> None:
        """Keep no more of this log for now. The worker's later bytes are refused as a gap until it
        resends from here (after a reconnect, when there may be room again)."""
        if attempt_id not in self.cut:
            log.warning("log %s cut at %d bytes: %s", path, size, why)
        free = f" ({human(self._disk.free())} free)" if self._disk is not None else ""
        self.cut[attempt_id] = why + free

    def close(self, attempt_id: str) -> None:
        """The attempt ended: release its file and wake followers so they can finish."""
        fd = self._fds.pop(attempt_id, None)
        if fd is not None:
            os.close(fd)
        self._sizes.pop(attempt_id, None)
        self._notify(attempt_id)

    def close_all(self) -> None:
        for attempt_id in list(self._fds):
            self.close(attempt_id)

    def _notify(self, attempt_id: str) -> None:
        event = self._changed.pop(attempt_id, None)
        if event is not None:
            event.set()

    async def wait_change(self, attempt_id: str, timeout: float) -> None:
        event = self._changed.setdefault(attempt_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def missing_note(self, attempt_id: str, size: int, expected: int, path: Path | None = None) -> bytes:
        """The note a reader gets where an ended attempt's log stops short of what its worker wrote."""
        why = self.cut.get(attempt_id) or self._removed(path) or "it never reached the master"
        return note_record(f"titan: {expected - size:,} bytes of output are missing here: {why}")

    @staticmethod
    def _removed(path: Path | None) -> str:
        if path is None or path.exists():
            return ""
        try:
            return (path.parent / REMOVED_MARK).read_text()
        except OSError:
            return ""

    def files(self) -> Iterator[StoredFile]:
        """Every log, its owner its run."""
        for run_dir in os.scandir(self.root):
            if not run_dir.is_dir():
                continue
            for entry in os.scandir(run_dir.path):
                if entry.name.endswith(".log") and entry.is_file():
                    info = entry.stat()
                    yield StoredFile(entry.path, info.st_size, info.st_mtime, run_dir.name)

    def remove(self, files: list[StoredFile], why: str) -> None:
        """Delete logs of ended jobs; a reader of one is told `why` (see missing_note)."""
        for f in files:
            path = Path(f.path)
            path.unlink(missing_ok=True)
            (path.parent / REMOVED_MARK).write_text(why)

    def remove_run(self, run_id: str) -> None:
        """Delete a run's logs with the run."""
        if ID_PATTERN.match(run_id):
            shutil.rmtree(self.root / run_id, ignore_errors=True)

    @staticmethod
    def read(path: Path, offset: int, limit: int = READ_CHUNK) -> bytes:
        """Whole records starting at `offset` (which must be a record boundary), up to `limit` bytes."""
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(limit)
        except FileNotFoundError:
            return b""
        end = data.rfind(b"\n")
        return data[: end + 1] if end >= 0 else b""
