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


def duration(job: JobRecord, now: float) -> str:
    if not job.started_at:
        return ""
    return f"{(job.ended_at or now) - job.started_at:.1f}s"


def counts_line(run: RunRecord) -> str:
    total = sum(run.counts.values())
    parts = ", ".join(f"{n} {state}" for state, n in sorted(run.counts.items()))
    return f"run {run.id} ({run.name}) {run.state}: {total} jobs: {parts}"


def _table(run: RunRecord, started: float):  # type: ignore[no-untyped-def]
    from rich.table import Table

    now = time.time()
    jobs = run.jobs
    if len(jobs) > TABLE_ROWS:
        moving = [j for j in jobs if j.state in ("RUNNING", "ASSIGNED", "FAILED", "UPSTREAM_FAILED")]
        jobs = moving[:TABLE_ROWS]
    table = Table(title=counts_line(run) + f"  [{now - started:.1f}s]", box=None, title_justify="left")
    for column in ("JOB", "STATE", "WORKER", "ATTEMPT", "TIME", "REASON"):
        table.add_column(column)
    for job in jobs:
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

    A master restart only pauses it: the client's reads ride it out (its `reconnect_timeout`)."""
    started = time.time()
    if sys.stdout.isatty() and not follow:
        from rich.live import Live

        run = client.get_run(run_id)
        with Live(_table(run, started), refresh_per_second=8, transient=False) as live:
            while not (run.terminal or run.settled):
                time.sleep(interval)
                run = client.get_run(run_id)
                live.update(_table(run, started))
        return run
    return _plain(client, run_id, follow, interval)


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
