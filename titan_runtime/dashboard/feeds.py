"""The dashboard's sources of live data, each one stream from the master shared by every browser.

- `ClusterFeed`: the one watch of the cluster (runs and workers), open for the process's life; it
  keeps the workers' load history for the sparklines, the latest runs, and a jobs-per-second rate
  (from the runs' job counts, so it costs no watch of every job).
- `RunFeed`: a run's watch (the run and its jobs), opened while a run's page is watched.
- `LogFeed`: a job's log tail (`follow_logs`), opened while a job's page is watched; it keeps the
  last lines only, starting near the end of a long log.
- `PollFeed`: what the master has no stream for (services, approvals), read every few seconds by
  one task while someone watches, never per browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from titan_runtime.client.aio import AsyncTitanClient
from titan_runtime.client.autoscaler import AutoscalerStatusRecord
from titan_runtime.client.errors import TitanConnectionError, TitanError
from titan_runtime.client.records import JobRecord, LogLine, RunRecord, WatchEvent, WorkerRecord
from titan_runtime.dashboard.live import Message, Topic
from titan_runtime.dashboard.render import TERMINAL_JOB_STATES, Renderer

log = logging.getLogger("titan.dashboard")

#: Load samples kept per worker (the master sends them every 2 s: about 6 minutes).
LOAD_SAMPLES = 180
#: The window of the jobs-per-second rate.
RATE_WINDOW = 30.0
#: Lines a log tail keeps (and sends a browser that opens the page); the browser keeps as many.
KEEP_LINES = 1000
#: Where a log tail starts: this many bytes before the end of what was logged already.
TAIL_BYTES = 256 * 1024
#: A line longer than this is cut in the live view (the download has it whole).
MAX_LINE_CHARS = 4000
#: The least time between two batches of log lines (lines arriving meanwhile go out together).
LOG_BATCH_EVERY = 0.1
#: A shared poll's period, and the cluster feed's autoscaler poll's.
POLL_EVERY = 3.0
AUTOSCALER_EVERY = 10.0
#: Backoff after a lost stream: doubling up to this.
MAX_BACKOFF = 15.0


def run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "name": run.name,
        "state": run.state,
        "reason": run.reason,
        "counts": run.counts,
        "created": run.created_at,
        "ended": run.ended_at,
    }


def job_json(job: JobRecord) -> dict[str, Any]:
    """What a browser needs of a job for the graph, the table and the timeline, and for the job
    page's facts and attempts table (each attempt's log size: known once it ends)."""
    return {
        "id": job.id,
        "state": job.state,
        "reason": job.reason,
        "kind": job.kind,
        "parents": job.parents,
        "attempt": job.attempt,
        "worker": job.worker_name,
        "exit": job.exit_code,
        "created": job.created_at,
        "started": job.started_at,
        "ended": job.ended_at,
        "attempts": [
            {
                "n": a.number,
                "state": a.state,
                "worker": a.worker_id,
                "exit": a.exit_code,
                "signal": a.signal,
                "reason": a.reason,
                "assigned": a.assigned_at,
                "started": a.started_at,
                "ended": a.ended_at,
                "log": a.log_size,
            }
            for a in job.attempts
        ],
    }


class Backoff:
    def __init__(self) -> None:
        self.delay = 0.5

    async def wait(self) -> None:
        await asyncio.sleep(self.delay)  # pacing of retries, not synchronisation
        self.delay = min(MAX_BACKOFF, self.delay * 2)

    def reset(self) -> None:
        self.delay = 0.5


class ClusterFeed(Topic):
    """The cluster as the one watch stream says it is (see the module's docstring)."""

    def __init__(self, client: AsyncTitanClient, renderer: Renderer, recent_runs: int = 20) -> None:
        super().__init__("cluster")
        self.client = client
        self.renderer = renderer
        self.recent_runs = recent_runs
        self.workers: list[WorkerRecord] = []
        self.load: dict[str, deque[tuple[float, float, float]]] = {}
        self.runs: dict[str, RunRecord] = {}
        self._ended_jobs: dict[str, int] = {}
        self._completions: deque[tuple[float, int]] = deque()
        self.at = 0.0  # the master's clock at the last event
        self.started_at = 0.0
        self.connected = False
        self.error = ""
        self.refused = False  # the master answers, but not to the dashboard's own token
        self.autoscaler: AutoscalerStatusRecord | None = None
        #: READY jobs by the tags they need ("a,b"; "" for any worker), with every workers list.
        self.queues: dict[str, int] = {}
        self.events = 0

    # ------------------------------------------------------------------ state

    def apply(self, event: WatchEvent) -> list[RunRecord]:
        """Take one watch event in; returns the runs it changed."""
        self.events += 1
        self.at = event.at or self.at
        if not self.started_at:
            self.started_at = self.at
        if event.snapshot:
            self.runs = {}
            self._ended_jobs = {run.id: _ended(run) for run in event.runs}
        if event.workers or event.snapshot:
            self._take_workers(event.workers, event.at)
            self.queues = dict(event.queues)
        for run in event.runs:
            ended = _ended(run)
            before = self._ended_jobs.get(run.id)
            if before is not None and ended > before:
                self._completions.append((event.at, ended - before))
            self._ended_jobs[run.id] = ended
            self.runs[run.id] = run
        self._trim_runs()
        while self._completions and self._completions[0][0] < self.at - RATE_WINDOW:
            self._completions.popleft()
        return list(event.runs)

    def _take_workers(self, workers: list[WorkerRecord], at: float) -> None:
        self.workers = list(workers)
        seen = set()
        for worker in workers:
            seen.add(worker.id)
            samples = self.load.setdefault(worker.id, deque(maxlen=LOAD_SAMPLES))
            if not samples or at - samples[-1][0] >= 1.0:
                samples.append((at, round(worker.cpu_percent, 1), round(worker.memory_percent, 1)))
        for gone in set(self.load) - seen:
            del self.load[gone]

    def _trim_runs(self) -> None:
        finished = sorted(
            (r for r in self.runs.values() if r.state != "RUNNING"), key=lambda r: r.created_at, reverse=True
        )
        for run in finished[self.recent_runs :]:
            del self.runs[run.id]
            self._ended_jobs.pop(run.id, None)

    def jobs_per_second(self) -> float:
        window = min(RATE_WINDOW, max(1.0, self.at - self.started_at))
        return sum(n for _, n in self._completions) / window

    def summary(self) -> dict[str, Any]:
        live = [r for r in self.runs.values() if r.state == "RUNNING"]
        alive = [w for w in self.workers if w.state == "ALIVE"]

        def count(*states: str) -> int:
            return sum(r.counts.get(s, 0) for r in live for s in states)

        return {
            "workers": len(alive),
            "workers_known": len(self.workers),
            "slots": sum(w.slots for w in alive),
            "slots_used": sum(w.running for w in alive),
            "runs_running": len(live),
            "jobs_running": count("RUNNING", "ASSIGNED"),
            "jobs_queued": count("READY"),
            "jobs_waiting": count("PENDING"),
            "jobs_per_second": round(self.jobs_per_second(), 2),
            "queues": sorted(self.queues.items(), key=lambda item: (-item[1], item[0])),
        }

    def recent(self) -> list[RunRecord]:
        return sorted(self.runs.values(), key=lambda r: (r.state != "RUNNING", -r.created_at))

    # ------------------------------------------------------------------ messages

    def status_message(self) -> Message:
        return Message(
            "status",
            self.renderer.fragment(
                "partials/status.html", connected=self.connected, error=self.error, refused=self.refused
            ),
        )

    def overview_messages(self, workers: bool, runs: bool) -> list[Message]:
        """What the overview shows of a change: the summary, and the workers or the runs that moved."""
        messages = [
            Message(
                "summary", lambda _: self.renderer.fragment("partials/summary.html", **self._summary_ctx())
            )
        ]
        if runs:
            recent = self.recent()
            messages.append(
                Message("recent", lambda _: self.renderer.fragment("partials/recent_runs.html", runs=recent))
            )
        if workers:
            at, listed = self.at, self.workers
            messages.append(
                Message(
                    "workers",
                    lambda _: self.renderer.fragment("partials/workers.html", workers=listed, at=at),
                )
            )
            latest = {wid: list(samples[-1]) for wid, samples in self.load.items() if samples}
            messages.append(Message.json("load", latest))
        return messages

    def _summary_ctx(self) -> dict[str, Any]:
        return {"summary": self.summary(), "autoscaler": self.autoscaler}

    def snapshot(self) -> list[Message]:
        history = {
            wid: [[s[0] for s in samples], [s[1] for s in samples], [s[2] for s in samples]]
            for wid, samples in self.load.items()
        }
        return [
            self.status_message(),
            *self.overview_messages(workers=True, runs=True),
            Message.json("loadhistory", history),
            Message.json("runs", [run_json(r) for r in self.runs.values()]),
        ]

    # ------------------------------------------------------------------ the stream

    async def run(self) -> None:
        poll = asyncio.get_running_loop().create_task(self._poll_autoscaler())
        try:
            await self._watch()
        finally:
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll

    async def _watch(self) -> None:
        backoff = Backoff()
        while True:
            try:
                async for event in self.client.watch(kinds=("runs", "workers"), recent_runs=self.recent_runs):
                    if not self.connected or self.error:
                        self.connected, self.error, self.refused = True, "", False
                        self.publish(self.status_message())
                    backoff.reset()
                    if event.resync:  # too much changed: read the runs again
                        event.runs = await self.client.list_runs(limit=self.recent_runs + 50)
                        event.snapshot = True
                    changed = self.apply(event)
                    messages = self.overview_messages(
                        workers=bool(event.workers) or event.snapshot, runs=bool(changed) or event.snapshot
                    )
                    if changed:
                        messages.append(Message.json("runs", [run_json(r) for r in changed]))
                    self.publish(*messages)
                raise TitanError("the master ended the watch stream")
            except TitanError as exc:
                self.connected, self.error = False, str(exc)
                self.refused = not isinstance(exc, TitanConnectionError)
                self.publish(self.status_message())
                log.warning("dashboard: the cluster watch: %s", exc)
            await backoff.wait()

    async def _poll_autoscaler(self) -> None:
        while True:
            try:
                status = await self.client.autoscaler_status()
            except TitanError:
                status = None
            if status != self.autoscaler:
                self.autoscaler = status
                self.publish(
                    Message(
                        "summary",
                        lambda _: self.renderer.fragment("partials/summary.html", **self._summary_ctx()),
                    )
                )
            await asyncio.sleep(AUTOSCALER_EVERY)  # a poll's period


def _ended(run: RunRecord) -> int:
    return sum(run.counts.get(state, 0) for state in TERMINAL_JOB_STATES)


class RunFeed(Topic):
    """One run's watch: the run and its jobs, as the graph, table and timeline of its page need."""

    kind = "run"

    def __init__(self, client: AsyncTitanClient, run_id: str) -> None:
        super().__init__(f"run:{run_id}")
        self.client = client
        self.run_id = run_id
        self.record: RunRecord | None = None
        self.jobs: dict[str, JobRecord] = {}
        self.ended = False
        #: Set once the run has been read whole (the watch's snapshot), or the watch failed.
        self.read = asyncio.Event()
        self._moved = asyncio.Event()  # set (and replaced) on every change the watch brings

    def apply(self, event: WatchEvent) -> list[JobRecord]:
        if event.snapshot:
            self.jobs = {}
        for run in event.runs:
            if run.id == self.run_id:
                self.record = run
        for job in event.jobs:
            if job.run_id == self.run_id:
                self.jobs[job.id] = job
        return [j for j in event.jobs if j.run_id == self.run_id]

    def caught_up(self, head: RunRecord) -> bool:
        """Whether the watch has seen at least what `head`, a read of the run's header, saw: as
        many jobs ended, and the run's end (a watch that has ended must have the run's state). A
        page drawn after the user's own action (a cancel) must show it, though the watch may be a
        moment behind the master."""
        if self.record is None:
            return False
        ended = sum(1 for j in self.jobs.values() if j.state in TERMINAL_JOB_STATES)
        same = self.record.state == head.state
        return ended >= _ended(head) and (same or not (head.terminal or self.ended))

    async def whole(
        self, timeout: float, head: RunRecord | None = None
    ) -> tuple[RunRecord, list[JobRecord]] | None:
        """The run and its jobs as the watch has them, once it has read them and caught up with
        `head` (None if not within `timeout`): a page is drawn from this, not from a read of its
        own."""
        deadline = asyncio.get_running_loop().time() + timeout
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.read.wait(), timeout)
            while (
                head is not None and self.record is not None and not self.ended and not self.caught_up(head)
            ):
                left = deadline - asyncio.get_running_loop().time()
                await asyncio.wait_for(self._moved.wait(), max(left, 0))
        if self.record is None or (head is not None and not self.caught_up(head)):
            return None
        return self.record, list(self.jobs.values())

    def _changed(self) -> None:
        self.read.set()
        self._moved.set()
        self._moved = asyncio.Event()

    def finished(self) -> bool:
        return (
            self.record is not None
            and self.record.state != "RUNNING"
            and all(j.state in TERMINAL_JOB_STATES for j in self.jobs.values())
        )

    def message(self, jobs: list[JobRecord], reset: bool) -> Message:
        return Message.json(
            "run",
            {
                "reset": reset,
                "run": run_json(self.record) if self.record else None,
                "jobs": [job_json(j) for j in jobs],
            },
        )

    def snapshot(self) -> list[Message]:
        if self.record is None:
            return []
        return [self.message(list(self.jobs.values()), reset=True)]

    async def run(self) -> None:
        backoff = Backoff()
        while not self.ended:
            try:
                async for event in self.client.watch(kinds=("runs", "jobs"), run_id=self.run_id):
                    backoff.reset()
                    if event.resync:  # too many jobs changed to list: read the run again
                        record = await self.client.get_run(self.run_id)
                        self.record, self.jobs = record, {j.id: j for j in record.jobs}
                        self.publish(self.message(record.jobs, reset=True))
                    else:
                        changed = self.apply(event)
                        self.publish(
                            self.message(
                                list(self.jobs.values()) if event.snapshot else changed, event.snapshot
                            )
                        )
                    self._changed()
                    if self.finished():
                        self.ended = True
                        return
            except TitanError as exc:
                log.warning("dashboard: the watch of run %s: %s", self.run_id, exc)
                self.publish(Message.json("trouble", {"error": str(exc)}))
                self._changed()  # a page waiting for it reads the run itself
            if not self.ended:
                await backoff.wait()


class LogFeed(Topic):
    """A job's log, followed once for every browser watching it: the last KEEP_LINES lines are kept
    (a late browser starts with them), new ones go out in batches."""

    kind = "log"

    def __init__(self, client: AsyncTitanClient, ref: str) -> None:
        super().__init__(f"log:{ref}")
        self.client = client
        self.ref = ref
        self.lines: deque[list[Any]] = deque(maxlen=KEEP_LINES)
        self.cut_head = False  # lines before the tail were not read
        self.ended = False
        self.error = ""
        self._pending: list[list[Any]] = []
        self._wake = asyncio.Event()

    def snapshot(self) -> list[Message]:
        messages = [Message.json("lines", {"reset": True, "cut": self.cut_head, "lines": list(self.lines)})]
        if self.ended:
            messages.append(Message.json("eof", {"error": self.error}))
        return messages

    def take(self, line: LogLine) -> None:
        text = str(line)
        if len(text) > MAX_LINE_CHARS:
            text = (
                text[:MAX_LINE_CHARS] + f" … ({len(text) - MAX_LINE_CHARS} more characters in the download)"
            )
        entry = [line.attempt, line.offset, "e" if line.stream == "stderr" else "o", text, line.titan]
        self.lines.append(entry)
        self._pending.append(entry)
        self._wake.set()

    async def run(self) -> None:
        flusher = asyncio.get_running_loop().create_task(self._flush())
        try:
            await self._follow()
        except TitanError as exc:
            self.error = str(exc)
        finally:
            self.ended = True
            self._wake.set()
            await flusher

    async def _follow(self) -> None:
        job = await self.client.get_job(self.ref)
        logged = job.attempts[-1].log_size if job.attempts else 0
        offset = max(0, logged - TAIL_BYTES)
        skip = offset > 0  # the first record read from the middle of the log is cut
        self.cut_head = skip
        if skip:  # browsers that joined before this was known: the page says where the tail starts
            self.publish(Message.json("lines", {"reset": True, "cut": True, "lines": list(self.lines)}))
        async for line in self.client.follow_logs(self.ref, offset=offset):
            if skip:
                skip = False
                continue
            self.take(line)

    async def _flush(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                batch, self._pending = self._pending, []
                self.publish(Message.json("lines", {"reset": False, "lines": batch}))
            if self.ended and not self._pending:
                self.publish(Message.json("eof", {"error": self.error}))
                return
            await asyncio.sleep(LOG_BATCH_EVERY)  # pacing: lines that come meanwhile go out together


class PollFeed(Topic):
    """Something the master has no stream for, read by one task every few seconds while watched;
    published (rendered per variant) only when it changed."""

    kind = "poll"

    def __init__(
        self,
        key: str,
        event: str,
        fetch: Callable[[], Awaitable[Any]],
        render: Callable[[Any, bool], str],
        every: float = POLL_EVERY,
    ) -> None:
        super().__init__(key)
        self.event = event
        self.fetch = fetch
        self.render = render
        self.every = every
        self.value: Any = None
        self.have = False
        self.fetched_at = 0.0

    def message(self) -> Message:
        value = self.value
        return Message(self.event, lambda writer: self.render(value, writer))

    def snapshot(self) -> list[Message]:
        return [self.message()] if self.have else []

    async def run(self) -> None:
        while True:
            try:
                value = await self.fetch()
            except TitanError as exc:
                log.warning("dashboard: %s: %s", self.key, exc)
            else:
                self.fetched_at = time.time()
                if not self.have or value != self.value:
                    self.value, self.have = value, True
                    self.publish(self.message())
            await asyncio.sleep(self.every)  # a poll's period
