"""Watching a run from the terminal: a live table on a TTY, one plain line per change otherwise."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import click

from titan_runtime.client.errors import TitanError
from titan_runtime.client.records import JobRecord, RunRecord
from titan_runtime.client.sync import TitanClient

STATE_STYLE = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "UPSTREAM_FAILED": "red",
    "CANCELLED": "yellow",
    "SKIPPED": "dim",
    "RUNNING": "cyan",
    "ASSIGNED": "cyan",
    "READY": "white",
    "PENDING": "dim",
}
#: More jobs than this and the live table shows only the ones that are moving or went wrong.
TABLE_ROWS = 30
#: The states a watcher of a big run asks for.
MOVING = ("RUNNING", "ASSIGNED", "FAILED", "UPSTREAM_FAILED")
#: Seconds between looks at a big run, between its piped summaries, and its failures printed one by one.
BIG_INTERVAL = 1.0
SUMMARY_EVERY = 10.0
FAILURES_SHOWN = 200


def duration(job: JobRecord, now: float) -> str:
    if not job.started_at:
        return ""
    return f"{(job.ended_at or now) - job.started_at:.1f}s"


def counts_line(run: RunRecord) -> str:
    total = sum(run.counts.values())
    parts = ", ".join(f"{n} {state}" for state, n in sorted(run.counts.items()))
    return f"run {run.id} ({run.name}) {run.state}: {total} jobs: {parts}"


def _table(run: RunRecord, started: float):  # type: ignore[no-untyped-def]
    """The live table: the counts, and the jobs (of a big run, only those the watcher asked for)."""
    from rich.table import Table

    now = time.time()
    table = Table(title=counts_line(run) + f"  [{now - started:.1f}s]", box=None, title_justify="left")
    for column in ("JOB", "STATE", "WORKER", "ATTEMPT", "TIME", "REASON"):
        table.add_column(column, overflow="fold")
    for job in run.jobs[:TABLE_ROWS]:
        style = STATE_STYLE.get(job.state, "")
        table.add_row(
            job.id,
            f"[{style}]{job.state}[/]" if style else job.state,
            job.worker_name or "",
            str(job.attempt or ""),
            duration(job, now),
            job.reason,
        )
    return table


def watch_run(client: TitanClient, run_id: str, follow: bool = False, interval: float = 0.25) -> RunRecord:
    """Show the run until it ends; with `follow`, also every job's output, prefixed by its id.

    A run of more than TABLE_ROWS jobs is watched by what moves: the master is asked for the counts
    and the running and failed jobs only (never every job, twice a second), and piped output is its
    failures as they happen and a summary now and then, not a line per job. A master restart only
    pauses it: the client's reads ride it out (its `reconnect_timeout`)."""
    started = time.time()
    first = client.get_run(run_id, jobs=MOVING, limit=TABLE_ROWS)
    big = sum(first.counts.values()) > TABLE_ROWS
    if follow or not (big or sys.stdout.isatty()):
        return _plain(client, run_id, follow, interval)
    if not sys.stdout.isatty():
        return _summaries(client, run_id, max(interval, BIG_INTERVAL))
    from rich.live import Live

    def look() -> RunRecord:
        if big:
            return client.get_run(run_id, jobs=MOVING, limit=TABLE_ROWS)
        return client.get_run(run_id)

    run = look()
    # Drawn once per look, not on a timer: on a busy machine the drawing competes with the run.
    with Live(_table(run, started), auto_refresh=False, transient=False) as live:
        while not (run.terminal or run.settled):
            time.sleep(max(interval, BIG_INTERVAL) if big else interval)
            run = look()
            live.update(_table(run, started), refresh=True)
    return run


def _summaries(client: TitanClient, run_id: str, interval: float) -> RunRecord:
    """A big run, piped: each failed job once, as it fails; the counts every SUMMARY_EVERY seconds
    and at the end."""
    told: set[str] = set()
    last_summary = time.monotonic()
    while True:
        run = client.get_run(run_id, jobs=("FAILED",), limit=FAILURES_SHOWN)
        for job in run.jobs:
            if job.id not in told:
                told.add(job.id)
                click.echo(f"{time.strftime('%H:%M:%S')} {job.id} FAILED: {job.reason}")
        if run.terminal or run.settled:
            break
        if time.monotonic() - last_summary >= SUMMARY_EVERY:
            last_summary = time.monotonic()
            click.echo(f"{time.strftime('%H:%M:%S')} {counts_line(run)}")
        time.sleep(interval)
    failed = run.counts.get("FAILED", 0)
    if failed > len(told):
        click.echo(
            f"... and {failed - len(told)} more failed jobs: titan-runtime run-status {run_id} --jobs FAILED"
        )
    click.echo(counts_line(run))
    return run


def _plain(client: TitanClient, run_id: str, follow: bool, interval: float) -> RunRecord:
    lock = threading.Lock()
    seen: dict[str, tuple[str, int]] = {}
    followers: dict[str, threading.Thread] = {}  # batch jobs' (a service's output never ends)
    started: set[str] = set()
    # A follower that gives up (the master gone for good) reports here, so the command fails with
    # that error instead of a thread's traceback.
    errors: list[TitanError] = []

    def say(text: str, err: bool = False) -> None:
        with lock:
            click.echo(text, err=err)

    def follow_job(job: JobRecord) -> Callable[[], None]:
        def run() -> None:
            # A child ran after its parents: its output comes after theirs, however fast they were.
            for parent in job.parents:
                if parent in followers:
                    followers[parent].join()
            try:
                for line in client.follow_logs(job.ref):
                    say(f"[{job.id}] {line}", err=line.stream == "stderr")
            except TitanError as exc:
                errors.append(exc)

        return run

    while True:
        run = client.get_run(run_id)
        now = time.time()
        for job in run.jobs:
            key = (job.state, job.attempt)
            if seen.get(job.id) == key:
                continue
            seen[job.id] = key
            where = (
                f" on {job.worker_name}" if job.worker_name and job.state in ("RUNNING", "ASSIGNED") else ""
            )
            took = f" ({duration(job, now)})" if job.terminal and job.started_at else ""
            why = f": {job.reason}" if job.reason and job.state not in ("SUCCEEDED",) else ""
            say(f"{time.strftime('%H:%M:%S')} {job.id} {job.state}{where}{took}{why}", err=follow)
            if follow and job.attempt and job.id not in started:
                started.add(job.id)
                thread = threading.Thread(target=follow_job(job), name=job.id, daemon=True)
                if job.kind != "service":
                    followers[job.id] = thread
                thread.start()
        if run.terminal or run.settled:
            break
        time.sleep(interval)
    for thread in followers.values():
        thread.join(30)
    if errors:
        raise errors[0]
    say(counts_line(run), err=follow)
    return run
