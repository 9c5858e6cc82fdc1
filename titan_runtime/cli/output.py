"""How commands print: tables that scripts can read, times, durations, and lines as they come."""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

from titan_runtime.cli.options import EXIT_CANCELLED, EXIT_TIMEOUT
from titan_runtime.client.records import JobRecord, LogLine


def exit_code_of(job: JobRecord) -> int:
    """The exit code `submit --wait` returns for a finished job."""
    if job.state == "SUCCEEDED":
        return 0
    if job.state == "CANCELLED":
        return EXIT_CANCELLED
    last = job.attempts[-1] if job.attempts else None
    if last is not None and last.reason.startswith("timed out"):
        return EXIT_TIMEOUT
    if job.exit_code is not None and job.exit_code > 0:
        return min(job.exit_code, 255)
    if last is not None and last.signal:
        try:
            return 128 + signal.Signals[last.signal].value
        except KeyError:
            return 1
    return 1


def fmt_time(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"


def fmt_duration(job: JobRecord) -> str:
    if not job.started_at:
        return "-"
    end = job.ended_at or time.time()
    return f"{end - job.started_at:.2f}s"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=None, header_style="bold", pad_edge=False)
    for row in rows:
        table.add_row(*row)
    Console(soft_wrap=True).print(table)


class LineWriter:
    """Writes job output lines as bytes, each to the stream the job wrote it to.

    Without `raw`, each line ends with a newline and Titan's own notes are included; with it, the
    exact bytes the job wrote (an unended last line stays unended), and nothing else. `live`
    flushes every line (following a running job); otherwise only when the stream changes, so that
    a 50 MB log is not a million writes while stdout and stderr still interleave in order."""

    def __init__(self, raw: bool = False, live: bool = False) -> None:
        self.raw = raw
        self.live = live
        self._last: Any = None

    def write(self, line: LogLine) -> None:
        if self.raw and line.titan:
            return
        stream = sys.stderr if line.stream == "stderr" else sys.stdout
        if self._last is not None and self._last is not stream:
            self._last.flush()
        self._last = stream
        data = line.raw if self.raw else line.data + b"\n"
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()  # what was written as text first
            buffer.write(data)
        else:  # a stream without bytes (an embedding that captured it): the text must do
            stream.write(data.decode("utf-8", errors="replace"))
        if self.live:
            (buffer or stream).flush()

    def close(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                buffer.flush()
