"""How commands print: tables that scripts can read, times, durations, and lines as they come."""

from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
from typing import Any

import click

from titan_runtime.cli.options import EXIT_CANCELLED, EXIT_TIMEOUT
from titan_runtime.client.errors import TitanError
from titan_runtime.client.records import JobRecord, LogLine
from titan_runtime.client.sync import TitanClient


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
    """A table that loses nothing: in a terminal, cells too wide for it fold onto further lines;
    anywhere else (a pipe, a file), plain columns of any width, one row per line, for grep and awk."""
    plain = plain_table(headers, rows)
    if not sys.stdout.isatty():
        click.echo(plain, nl=False)
        return
    head, _, body = plain.partition("\n")
    if max(map(len, plain.splitlines())) <= shutil.get_terminal_size().columns:
        # It fits: the same columns, without importing rich (a third of a short command's time).
        click.echo(click.style(head, bold=True) + "\n" + body, nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(soft_wrap=True).print(table)


def plain_table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell and two spaces apart, never cut (a cell's own newlines
    become spaces so that a row stays one line)."""
    cells = [[str(c).replace("\n", " ") for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in cells]
    return "\n".join(lines) + "\n"


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


#: Seconds a waiting command gives a job before it says that no worker can run it.
UNPLACEABLE_WARNING_AFTER = 5.0


def warn_if_unplaceable(
    client: TitanClient, run_id: str, after: float = UNPLACEABLE_WARNING_AFTER
) -> threading.Timer:
    """In `after` seconds, say on stderr (once) which of the run's queued jobs no connected worker
    can run, and why: a command waiting on such a job would otherwise wait in silence."""

    def look() -> None:
        try:
            queued = client.get_run(run_id, jobs=("READY",), limit=200).jobs
        except TitanError:
            return  # the wait itself reports a master that is gone
        stuck = [j for j in queued if j.reason.startswith(("waiting for a worker", "waiting for worker "))]
        if stuck:
            first = stuck[0]
            more = f" (and {len(stuck) - 1} more jobs)" if len(stuck) > 1 else ""
            click.echo(
                f"titan-runtime: warning: {first.ref} is {first.reason}{more}: no connected worker can run "
                "it; start one that can, or cancel it (submit --fail-if-unplaceable SECONDS fails such a job)",
                err=True,
            )

    timer = threading.Timer(after, look)
    timer.daemon = True
    timer.start()
    return timer
