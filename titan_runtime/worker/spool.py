"""An attempt's output, as the worker keeps it until the master has it.

Output becomes records "<unix ms> <S> <bytes>\\n" appended to a spool file, where S says what the
bytes are:

- `O` / `E`: the end of a stdout / stderr line (the job wrote a newline after these bytes);
- `o` / `e`: part of a stdout / stderr line that goes on in the next record of that stream (a line
  longer than MAX_LINE is cut into pieces), or, last in the log, bytes the job never ended with a
  newline;
- `T`: a line from Titan itself (why a job could not start, output that was cut).

So any line comes back whole and byte for byte (clients join the pieces), while memory stays flat
however much a job prints: the file, not a queue, holds what has not been shipped yet. The
master's copy is byte-identical, so after a reconnect the worker resends from the offset the
master reports.

A job's secrets are masked before anything is written (masking.py): the spool file, and so the
master's copy, never holds a value of 4 bytes or more that the job printed.

When the worker's disk falls below its watermark (or a write finds it full), the spool is cut:
one `T` record says so, and the rest of the job's output is read and dropped, so that the job runs
on and ends normally instead of blocking on a full pipe.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterable
from pathlib import Path

from titan_runtime.diskspace import DiskGuard, human
from titan_runtime.worker.masking import Masker, mask_text

MAX_LINE = 64 * 1024
_PIECE = {b"O": b"o", b"E": b"e"}


class Spool:
    def __init__(self, path: Path, disk: DiskGuard | None = None, secrets: Iterable[str] = ()) -> None:
        """`secrets`: values to mask as `***` in everything this spool is fed."""
        self.path = path
        self._secrets = [s for s in secrets if s]
        self._maskers = {b"O": Masker(self._secrets), b"E": Masker(self._secrets)} if self._secrets else None
        self._disk = disk
        self._fd = -1  # the file is created with the first line: a silent job costs no file
        self._created = False
        self.size = 0
        self.dropped = 0  # bytes of output not kept since the spool was cut
        self.cut = False
        self._partial = {b"O": b"", b"E": b""}

    def feed(self, stream: bytes, data: bytes) -> None:
        """Add raw output of `stream` (b"O" or b"E"); complete lines (and pieces of long ones) become records."""
        if self.cut:
            self.dropped += len(data)
            return
        if self._maskers is not None:
            data = self._maskers[stream].feed(data)
        self._lines(stream, data)

    def _lines(self, stream: bytes, data: bytes) -> None:
        buf = self._partial[stream] + data
        lines = buf.split(b"\n")
        rest = lines.pop()
        records: list[tuple[bytes, bytes]] = []
        piece = _PIECE[stream]
        for line in lines:
            while len(line) > MAX_LINE:
                records.append((piece, line[:MAX_LINE]))
                line = line[MAX_LINE:]
            records.append((stream, line))
        while len(rest) >= MAX_LINE:
            records.append((piece, rest[:MAX_LINE]))
            rest = rest[MAX_LINE:]
        self._partial[stream] = rest
        if records:
            self._write(records)

    def flush(self) -> None:
        """Write out unterminated last lines (at process exit), as pieces: no newline follows them."""
        if self._maskers is not None and not self.cut:
            for stream, masker in self._maskers.items():
                held = masker.flush()
                if held:
                    self._lines(stream, held)
        for stream, rest in self._partial.items():
            if rest:
                self._partial[stream] = b""
                if not self.cut:
                    self._write([(_PIECE[stream], rest)])

    def note(self, text: str) -> None:
        """A line from Titan itself (why a job could not start, what happened to its output)."""
        self._write([(b"T", mask_text(text, self._secrets).encode())], note=True)

    def _write(self, records: list[tuple[bytes, bytes]], note: bool = False) -> None:
        prefix = str(int(time.time() * 1000)).encode() + b" "
        out = b"".join(prefix + kind + b" " + data + b"\n" for kind, data in records)
        if not note and self._disk is not None and not self._disk.has_room(len(out)):
            self._cut(self._disk.describe("the worker's disk"), len(out))
            return
        try:
            if self._fd < 0:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._created = True
            written = os.write(self._fd, out)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            written = 0
        if written < len(out):  # the disk is full after all: keep no half-written record
            if self._fd >= 0:
                os.ftruncate(self._fd, self.size)
            if not note:
                self._cut(
                    f"the worker's disk is full ({human(self._disk.free()) if self._disk else '?'} free)",
                    len(out),
                )
            return
        self.size += len(out)

    def _cut(self, why: str, lost: int) -> None:
        self.cut = True
        self.dropped += lost
        self.note(f"titan: output cut here: {why}; the rest of this job's output is not kept")

    def read(self, offset: int, limit: int) -> bytes:
        if offset >= self.size:
            return b""
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            return fh.read(limit)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def remove(self) -> None:
        self.close()
        if self._created:
            self.path.unlink(missing_ok=True)
