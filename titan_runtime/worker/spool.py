"""An attempt's output, as the worker keeps it until the master has it.

Lines from stdout and stderr become records "<unix ms> <O|E> <line>\\n" appended to a spool file.
The master's copy is byte-identical, so after a reconnect the worker resends from the offset the
master reports. Memory stays flat however much a job prints: lines longer than MAX_LINE are split,
and the file, not a queue, holds what has not been shipped yet.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

MAX_LINE = 64 * 1024


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1  # the file is created with the first line: a silent job costs no file
        self._created = False
        self.size = 0
        self._partial = {b"O": b"", b"E": b""}

    def feed(self, stream: bytes, data: bytes) -> None:
        """Add raw output of `stream` (b"O" or b"E"); complete lines become records."""
        buf = self._partial[stream] + data
        lines = buf.split(b"\n")
        rest = lines.pop()
        pieces = [line[i : i + MAX_LINE] for line in lines for i in range(0, max(len(line), 1), MAX_LINE)]
        while len(rest) >= MAX_LINE:
            pieces.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self._partial[stream] = rest
        if pieces:
            self._write(stream, pieces)

    def flush(self) -> None:
        """Write out unterminated last lines (at process exit)."""
        for stream, rest in self._partial.items():
            if rest:
                self._write(stream, [rest])
                self._partial[stream] = b""

    def note(self, text: str) -> None:
        """A line from Titan itself (why a job could not start), on the stderr stream."""
        self._write(b"E", [text.encode()])

    def _write(self, stream: bytes, lines: list[bytes]) -> None:
        prefix = str(int(time.time() * 1000)).encode() + b" " + stream + b" "
        out = b"".join(prefix + line + b"\n" for line in lines)
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._created = True
        os.write(self._fd, out)
        self.size += len(out)

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
