"""A master restart: the state rebuilt from what the store kept, records that cannot be read failed
in place (never a master that cannot start), attempts adopted or lost. A part of ClusterState
(core/cluster.py), sharing its state."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from titan_runtime.core.common import ClusterPart, describe_error
from titan_runtime.core.effects import (
    Note,
)
from titan_runtime.core.model import (
    Attempt,
    Job,
    JobSpec,
    JobState,
    Run,
    RunState,
    Worker,
    WorkerState,
)

T = TypeVar("T")


class RecoveryMixin(ClusterPart):
    def restore(
        self,
        runs: Iterable[dict[str, Any]],
        jobs: Iterable[dict[str, Any]],
        attempts: Iterable[dict[str, Any]],
        workers: Iterable[dict[str, Any]],
        now: float,
        last_seq: int = 0,
    ) -> None:
        """Rebuild from the store after a master (re)start.

        Workers not known dead become UNKNOWN: they keep their attempts for one lease, to
        reconnect and report what they hold. Nothing terminal is touched. `last_seq`: the highest
        run seq given so far, finished runs (which are not restored) included. A record that cannot be
        read never stops the master from starting: its job is FAILED saying so (or, for a record
        that names no job, it is skipped), and the master's log says which.
        """
        self._run_seq = max(self._run_seq, last_seq)
        for run in self._readable("run", runs, Run.from_row):
            self.runs[run.id] = run
            self._run_seq = max(self._run_seq, run.seq)
        for row in jobs:
            unreadable = False
            try:
                job = Job.from_row(row)
            except Exception as exc:
                found = self._unreadable_job(row, exc, now)
                if found is None:
                    continue
                job, unreadable = found, True
            run = self.runs.get(job.run_id)
            if run is None:
                self._skip_record("job", row, KeyError(f"its run {job.run_id} has no record"))
                continue
            if unreadable:  # failed just now, which must be stored
                self._dirty_jobs.add(job.key)
            job.order = next(self._job_order)
            run.jobs[job.id] = job
            self._runs_by_job_id.setdefault(job.id, []).append(run.id)
            if job.spec.is_service:
                self.services.setdefault(job.spec.service_id, []).append(job.key)
                run.services += 1
            if not job.state.terminal:
                run.unfinished += 1
        self._restore_attempts(attempts)
        for worker in self._readable("worker", workers, Worker.from_row):
            if not worker.state.gone:
                worker.state = WorkerState.UNKNOWN
                worker.last_heartbeat = now
            self.workers[worker.id] = worker
        for index in self._runs_by_job_id.values():
            index.sort(key=lambda run_id: self.runs[run_id].seq)
        orphans: list[tuple[Job, str]] = []
        for run in self.runs.values():
            for job in run.jobs.values():
                job.released = job.state.terminal or job.delivered
            for job in run.jobs.values():
                missing = self._link(run, job)
                if missing:
                    orphans.append((job, missing))
            for job in run.jobs.values():
                job.mapped.sort(key=lambda i, run=run: run.jobs[i].spec.map_index)
        for job, missing in orphans:
            if not job.state.terminal:
                self._end_job(job, JobState.FAILED, now, f"its parent {missing} has no stored record")
        for job, attempt in list(self._attempts.values()):
            if attempt.state.terminal:
                continue
            worker = self.workers.get(attempt.worker_id)
            if worker is not None and worker.state is WorkerState.UNKNOWN:
                worker.hold(attempt, job.spec.slots, job.spec.need)
            else:
                self._lose(job, attempt, now, "its worker was gone when the master restarted")
        for run in sorted(self.runs.values(), key=lambda r: r.seq):
            for job in run.jobs.values():
                if job.state is JobState.READY:
                    self._enqueue(job, now)  # unchanged: nothing to write back
                    self._push_unplaceable_timer(job)
                elif job.state is JobState.RESTARTING:
                    self._push_timer(job)
                elif job.state is JobState.WAITING_APPROVAL:
                    heapq.heappush(self._timers, (job.gate_deadline, next(self._timer_seq), job.key))
                elif job.state is JobState.PENDING and job.waiting_on == 0:
                    if job.not_before:  # a delay or a backoff already started: it runs out as it was
                        self._push_timer(job)
                    else:
                        self._decide(job, now)

            self._maybe_finish_run(run, now)
            if run.state is not RunState.RUNNING and run.id not in self._finishing:  # ended before
                self._track_ended(run)
        self._dispatch_needed = True
        self._settle(now)

    def _restore_attempts(self, rows: Iterable[dict[str, Any]]) -> None:
        readable = self._readable("attempt", rows, Attempt.from_row)
        for attempt in sorted(readable, key=lambda a: (a.run_id, a.job_id, a.number, a.void is False)):
            run = self.runs.get(attempt.run_id)
            job = run.jobs.get(attempt.job_id) if run else None
            if job is None:
                self._skip_record("attempt", attempt.to_row(), KeyError("its job has no record"))
                continue
            if attempt.void:
                job.voided += (attempt.id,)
            else:
                job.attempts.append(attempt)
            self._attempts[attempt.id] = (job, attempt)

    def _readable(
        self, kind: str, rows: Iterable[dict[str, Any]], parse: Callable[[dict[str, Any]], T]
    ) -> Iterator[T]:
        """The records that can be read; each one that cannot is skipped and said in a Note."""
        for row in rows:
            try:
                yield parse(row)
            except Exception as exc:
                self._skip_record(kind, row, exc)

    def _skip_record(self, kind: str, row: Any, exc: BaseException) -> None:
        self._effects.append(
            Note(f"skipped a {kind} record that cannot be read ({describe_error(exc)}): {str(row)[:300]}")
        )

    def _unreadable_job(self, row: Any, exc: BaseException, now: float) -> Job | None:
        """A job whose stored record cannot be read: FAILED (saying why) in place of what it was."""
        run_id = row.get("run_id") if isinstance(row, dict) else None
        job_id = row.get("job_id") if isinstance(row, dict) else None
        if not (isinstance(run_id, str) and isinstance(job_id, str) and job_id):
            self._skip_record("job", row, exc)
            return None
        reason = f"its stored record could not be read when the master restarted ({describe_error(exc)})"
        self._effects.append(Note(f"job {run_id}/{job_id}: {reason}"))
        return Job(
            run_id=run_id,
            spec=JobSpec(id=job_id, command=("false",)),
            state=JobState.FAILED,
            reason=reason,
            ended_at=now,
        )
