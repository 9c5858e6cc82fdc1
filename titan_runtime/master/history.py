"""Runs wherever they are: live ones in the core's memory, finished ones in the store.

A run that has ended leaves `ClusterState` (see `evict_finished`), so the master's memory holds
what is live and not the cluster's history: a master with a million finished jobs behind it
starts and runs like a new one. Queries about a finished run come here and are answered from the
store, through a small cache of the runs read or ended last (a client that waited for a run
usually asks for its status or its logs next).

Everything here runs on the event loop thread, like every other store call (`MasterLoop.in_store`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from titan_runtime.core.cluster import ClusterState, NotFound, resolve_ref
from titan_runtime.core.model import Attempt, Job, Run
from titan_runtime.store import Store
from titan_runtime.store.base import RunQuery, run_columns

#: Jobs the cache of finished runs holds at most (a run bigger than this is read each time).
CACHED_JOBS = 20_000


def build_run(row: dict[str, Any], jobs: list[dict[str, Any]], attempts: list[dict[str, Any]]) -> Run:
    """A finished run as the store keeps it, with its jobs and their attempts (void ones left out)."""
    run = Run.from_row(row)
    for row in jobs:
        job = Job.from_row(row)
        run.jobs[job.id] = job
    for attempt in sorted((Attempt.from_row(a) for a in attempts), key=lambda a: a.number):
        job = run.jobs.get(attempt.job_id)
        if job is not None and not attempt.void:
            job.attempts.append(attempt)
    return run


class History:
    def __init__(self, state: ClusterState, store: Store, cached_jobs: int = CACHED_JOBS) -> None:
        self._state = state
        self._store = store
        self._cache: OrderedDict[str, Run] = OrderedDict()
        self._cached_jobs = 0
        self._limit = cached_jobs
        #: service id -> its last deployment that ended and left memory (RUN/JOB), while this master runs
        self._ended_services: dict[str, str] = {}

    # ------------------------------------------------------------------ finding

    def run(self, run_id: str) -> Run:
        """The run, live or finished; NotFound if there is none."""
        found = self.find(run_id)
        if found is None:
            raise NotFound(f"no run {run_id!r}: list runs with `titan-runtime runs`")
        return found

    def find(self, run_id: str) -> Run | None:
        live = self._state.runs.get(run_id)
        if live is not None:
            return live
        cached = self._cache.get(run_id)
        if cached is not None:
            self._cache.move_to_end(run_id)
            return cached
        snapshot = self._store.read_run(run_id)
        if snapshot is None:
            return None
        run = build_run(snapshot.runs[0], snapshot.jobs, snapshot.attempts)
        self._keep(run)
        return run

    def header(self, run_id: str) -> Run | None:
        """The run without necessarily its jobs (its state, times, labels, counts): cheap to ask
        on every call a job's credential makes."""
        found = self._state.runs.get(run_id) or self._cache.get(run_id)
        if found is not None:
            return found
        row = self._store.run_row(run_id)
        return None if row is None else Run.from_row(row)

    def resolve(self, ref: str) -> Job:
        """A job by "RUN/JOB", by the id of a run of one job, or by a bare job id (its latest run)."""
        run_id, slash, job_id = ref.partition("/")
        if slash and self._elsewhere(run_id):
            found = self._with_one_job(run_id, job_id)
            if found is not None:
                return found.jobs[job_id]
        return resolve_ref(ref, self.find, self._latest_holder)

    def _latest_holder(self, job_id: str) -> Run | None:
        live = self._state.latest_holder(job_id)
        if live is not None:
            return live
        holders = self._store.job_runs(job_id, 1)
        if not holders:
            return None
        return (
            self._with_one_job(holders[0], job_id) if self._elsewhere(holders[0]) else self.find(holders[0])
        )

    def _elsewhere(self, run_id: str) -> bool:
        """Neither live nor cached: only the store has it."""
        return run_id not in self._state.runs and run_id not in self._cache

    def _with_one_job(self, run_id: str, job_id: str) -> Run | None:
        """A finished run holding only the job asked for (never cached): a run of 100,000 jobs is
        not read whole, seconds, to answer for one of them."""
        snapshot = self._store.read_job(run_id, job_id)
        return None if snapshot is None else build_run(snapshot.runs[0], snapshot.jobs, snapshot.attempts)

    def runs(self, query: RunQuery) -> Iterator[Run]:
        """Runs matching `query`, latest first, live ones as they are in memory now (the store may
        not have their last changes yet), read a page at a time until the caller stops."""
        before = query.before_seq
        while True:
            page = self._store.list_runs(
                RunQuery(query.states, query.since, before, query.agent_run_id, max(query.limit, 100))
            )
            for row in page:
                live = self._state.runs.get(row["id"])
                if live is None or not query.states or live.state.value in query.states:
                    yield live or Run.from_row(row)
            if len(page) < max(query.limit, 100):
                return
            before = run_columns(page[-1])[0]

    # ------------------------------------------------------------------ the cache

    def remember(self, runs: list[Run]) -> None:
        """Runs that just left the core's memory: the next questions are likely about them."""
        for run in runs:
            self._keep(run)
            for job in run.jobs.values():
                if job.spec.is_service:
                    self._ended_services[job.spec.service_id] = job.ref

    def service_jobs(self, service_id: str) -> list[Job]:
        """A service's live deployments, or else its last one that ended (still in the store)."""
        try:
            return self._state.service_jobs(service_id)
        except NotFound:
            ref = self._ended_services.get(service_id)
            if ref is None:
                raise
            try:
                return [self.resolve(ref)]
            except NotFound:  # deleted since
                del self._ended_services[service_id]
                raise NotFound(
                    f"no service {service_id!r}: list them with `titan-runtime services`"
                ) from None

    def ended_services(self) -> list[Job]:
        """The last ended deployment of each service that has no live one."""
        found = []
        for service_id in list(self._ended_services):
            if service_id not in self._state.services:
                try:
                    found.extend(self.service_jobs(service_id))
                except NotFound:
                    pass
        return found

    def forget(self, run_ids: list[str]) -> None:
        """Runs deleted from the store."""
        for run_id in run_ids:
            run = self._cache.pop(run_id, None)
            if run is not None:
                self._cached_jobs -= len(run.jobs)

    def _keep(self, run: Run) -> None:
        if len(run.jobs) > self._limit:
            return
        previous = self._cache.pop(run.id, None)
        if previous is not None:
            self._cached_jobs -= len(previous.jobs)
        self._cache[run.id] = run
        self._cached_jobs += len(run.jobs)
        while self._cached_jobs > self._limit:
            _, oldest = self._cache.popitem(last=False)
            self._cached_jobs -= len(oldest.jobs)
