"""The client API's watch stream (master/watch.py): a snapshot, then what changed as it is
committed. A mixin of `TitanServicer`."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from titan_runtime.core.cluster import ClusterState, NotFound
from titan_runtime.core.model import Job, RunState, Worker
from titan_runtime.master.convert import job_to_pb, run_to_pb, worker_to_pb
from titan_runtime.master.watch import INTERVAL, KINDS, MAX_PENDING, TooManyWatchers, WatchHub, pending_events
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.store.base import FINISHED_STATES, RunQuery

if TYPE_CHECKING:
    from titan_runtime.master.history import History
    from titan_runtime.master.loop import MasterLoop

#: How long a dead worker stays in listings.
DEAD_WORKER_VISIBLE_S = 600.0
MAX_RECENT_RUNS = 1000
#: Tag sets of queued jobs an event lists (the most waited for); tags come from submitters.
MAX_QUEUES = 50
#: Characters of function tasks' results one event carries (Watch with results).
RESULTS_BUDGET = 2 * 1024 * 1024
#: The longest interval a watcher may ask for between events.
MAX_INTERVAL = 60.0


class _Results:
    """Ended function tasks' results put in an event's JobInfos, up to RESULTS_BUDGET characters
    in all (past it, callers read the others with GetResult): a client's futures are settled by
    its watch alone, with no call per task."""

    def __init__(self) -> None:
        self.left = RESULTS_BUDGET

    def add(self, info: pb.JobInfo, job: Job) -> pb.JobInfo:
        result = job.result
        if result is not None and job.spec.is_function and job.state.terminal and len(result) <= self.left:
            info.result_json = result
            self.left -= len(result)
        return info


def visible_workers(state: ClusterState, now: float) -> list[Worker]:
    """The workers a listing shows: live ones, and dead ones for ten minutes; by name."""
    workers = [
        w
        for w in state.workers.values()
        if not w.state.gone or now - w.last_heartbeat < DEAD_WORKER_VISIBLE_S
    ]
    workers.sort(key=lambda w: (w.state.gone, w.name, w.id))
    return workers


class WatchApi:
    _loop: MasterLoop
    _state: ClusterState
    history: History
    watch_hub: WatchHub

    async def Watch(
        self, request: pb.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchEvent]:
        kinds = frozenset(request.kinds) or KINDS
        interval = request.interval if request.HasField("interval") else INTERVAL
        if (
            not kinds <= KINDS
            or len(request.run_id) > 256
            or not 0 <= request.recent_runs <= MAX_RECENT_RUNS
            or not 0 <= interval <= MAX_INTERVAL
        ):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"watch kinds are {', '.join(sorted(KINDS))}; recent_runs 0-{MAX_RECENT_RUNS}; a run id of "
                f"at most 256 characters; an interval of 0-{MAX_INTERVAL:g} seconds",
            )
        try:
            with self.watch_hub.watching(kinds, request.run_id) as watcher:
                yield self._snapshot(kinds, request.run_id, request.recent_runs or 20, request.results)
                async for _ in pending_events(watcher, interval):
                    event = self._changes(*watcher.take(), results=request.results)
                    if event is not None:
                        yield event
        except TooManyWatchers as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))

    def _snapshot(
        self, kinds: frozenset[str], run_id: str, recent: int, results: bool = False
    ) -> pb.WatchEvent:
        event = pb.WatchEvent(snapshot=True, at=self._loop.clock())
        fits = _Results() if results else None
        state = self._state
        if run_id:
            run = self.history.find(run_id)
            if run is not None:
                if "runs" in kinds:
                    event.runs.append(run_to_pb(state, run, with_jobs=False))
                if "jobs" in kinds:
                    if len(run.jobs) > MAX_PENDING:
                        event.resync = True
                    else:
                        event.jobs.extend(
                            fits.add(job_to_pb(state, job), job) if fits else job_to_pb(state, job)
                            for job in run.jobs.values()
                        )
        elif "runs" in kinds:
            live = sorted(
                (r for r in state.runs.values() if r.state is RunState.RUNNING), key=lambda r: -r.seq
            )
            finished = itertools.islice(
                self.history.runs(RunQuery(states=frozenset(FINISHED_STATES), limit=recent)), recent
            )
            event.runs.extend(run_to_pb(state, r, with_jobs=False) for r in (*live, *finished))
        if "workers" in kinds:
            self._add_workers(event)
        return event

    def _changed_job(self, run_id: str, job_id: str) -> Job | None:
        live = self._state.runs.get(run_id)
        if live is not None:
            return live.jobs.get(job_id)
        try:
            return self.history.resolve(f"{run_id}/{job_id}")
        except NotFound:  # deleted since
            return None

    def _add_workers(self, event: pb.WatchEvent) -> None:
        state = self._state
        event.workers.extend(worker_to_pb(w) for w in visible_workers(state, self._loop.clock()))
        for tags, jobs in sorted(state.queues.depth_by_tags().items(), key=lambda item: -item[1])[
            :MAX_QUEUES
        ]:
            event.queues.append(pb.QueueDepth(tags=sorted(tags), jobs=jobs))

    def _changes(
        self,
        run_ids: set[str],
        job_keys: set[tuple[str, str]],
        workers: bool,
        resync: bool,
        results: bool = False,
    ) -> pb.WatchEvent | None:
        if not (run_ids or job_keys or workers or resync):
            return None
        state = self._state
        event = pb.WatchEvent(at=self._loop.clock(), resync=resync)
        # A run that ended since the commit has left memory: its header (state, counts) and each
        # changed job are read alone, never the whole run (it may hold 100,000 jobs).
        for run_id in run_ids:
            run = state.runs.get(run_id) or self.history.header(run_id)
            if run is not None:
                event.runs.append(run_to_pb(state, run, with_jobs=False))
        fits = _Results() if results else None
        for run_id, job_id in job_keys:
            job = self._changed_job(run_id, job_id)
            if job is not None:
                info = job_to_pb(state, job)
                event.jobs.append(fits.add(info, job) if fits else info)
        if workers:
            self._add_workers(event)
        return event
