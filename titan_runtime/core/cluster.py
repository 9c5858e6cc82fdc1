"""The control plane's state machine: events in, effects out, no I/O.

`ClusterState` owns every run, job, attempt and worker the master knows. The master feeds it
events (a submission, a worker's hello, an attempt's exit, the passing of time) and carries out
the effects it emits (send this assignment, cancel that attempt) only after `take_changes()`
has been written to the store. Everything that decides something lives here, so it is tested
without processes, sockets or clocks (`now` is always passed in).

This module holds submissions, placement, jobs ending and the passing of time; its parts, sharing
the same state, are dependencies.py (trigger rules, conditions, releasing children), outcomes.py
(what an attempt's end makes of its job: success, retry, failure), workers.py (joining, leaving,
reports), services.py, dynamic.py (gates, loops, maps, branches) and recovery.py (a restart). What
they share besides is in common.py; job and attempt states change only through `_move` and `_move_attempt`, held to the
transition tables in states.py.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace

from titan_runtime.core.common import (  # noqa: F401 - also this module's public names, as before
    FAILED_STATES,
    BadResult,
    ClusterConfig,
    NotFound,
    NotYours,
    check_open_for,
    describe_exit,
    describe_submitter,
    env_name,
    expand_replicas,
    parse_result,
    reported_ports,
    resolve_ref,
    result_problem,
)
from titan_runtime.core.dag import check_graph
from titan_runtime.core.dependencies import DependenciesMixin
from titan_runtime.core.dynamic import DynamicMixin
from titan_runtime.core.effects import (
    AckFinished,
    Assign,
    AttemptExit,
    CancelAttempt,
    Changes,
    DisconnectWorker,
    Effect,
    Note,
    Rows,
)
from titan_runtime.core.eviction import EvictionMixin
from titan_runtime.core.model import (
    ATTEMPT_TRANSITIONS,
    JOB_TRANSITIONS,
    Attempt,
    AttemptState,
    IllegalTransition,
    InvalidSpec,
    Job,
    JobSpec,
    JobState,
    Run,
    RunState,
    Worker,
    WorkerState,
)
from titan_runtime.core.outcomes import OutcomesMixin
from titan_runtime.core.recovery import RecoveryMixin
from titan_runtime.core.resources import Need
from titan_runtime.core.scheduler import ReadyQueues, Requirement
from titan_runtime.core.services import ServicesMixin
from titan_runtime.core.workers import WorkersMixin


class ClusterState(
    DependenciesMixin, OutcomesMixin, WorkersMixin, DynamicMixin, ServicesMixin, RecoveryMixin, EvictionMixin
):
    def __init__(
        self,
        config: ClusterConfig | None = None,
        new_id: Callable[[], str] | None = None,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        self.config = config or ClusterConfig()
        counter = itertools.count(1)
        self._new_id = new_id or (lambda: f"a{next(counter)}")
        self._jitter = jitter or (lambda: 1.0)  # the master gives random.random; 1.0: the whole step
        #: service id -> keys of the jobs that ran or run it, oldest deployment first
        self.services: dict[str, list[tuple[str, str]]] = {}
        self.runs: dict[str, Run] = {}
        self.workers: dict[str, Worker] = {}
        self.queues = ReadyQueues()
        self._attempts: dict[str, tuple[Job, Attempt]] = {}
        self._runs_by_job_id: dict[str, list[str]] = {}
        self._timers: list[tuple[float, int, tuple[str, str]]] = []
        self._timer_seq = itertools.count()
        self._job_order = itertools.count()
        self._run_seq = 0
        self._effects: list[Effect] = []
        self._dirty_runs: set[str] = set()
        self._dirty_jobs: set[tuple[str, str]] = set()
        self._new_jobs: dict[tuple[str, str], None] = {}  # ordered: the store keeps arrival order
        self._dirty_attempts: set[str] = set()
        self._dirty_workers: set[str] = set()
        self._ended_attempts: set[str] = set()
        self._dispatch_needed = False
        self._requirements: dict[tuple[frozenset[str], str, frozenset[str], Need], Requirement] = {}
        #: runs that ended -> their attempts still live; they leave memory once none is (evict_finished)
        self._finishing: dict[str, set[str]] = {}
        self._released: deque[Job] = deque()  # resolved jobs whose children have not been told yet
        self._releasing = False

    # ------------------------------------------------------------------ queries

    def run(self, run_id: str) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r}: list runs with `titan-runtime runs`")
        return run

    def resolve(self, ref: str) -> Job:
        """Find a job by "RUN/JOB", by the id of a run of one job, or by a bare job id (latest run)."""
        return resolve_ref(ref, self.runs.get, self.latest_holder)

    def latest_holder(self, job_id: str) -> Run | None:
        """The latest live run with a job of that id."""
        run_ids = self._runs_by_job_id.get(job_id)
        return self.runs[run_ids[-1]] if run_ids else None

    def attempt(self, attempt_id: str) -> tuple[Job, Attempt] | None:
        return self._attempts.get(attempt_id)

    def next_deadline(self) -> float | None:
        """When `tick` next has something to do, or None."""
        deadlines = [self._timers[0][0]] if self._timers else []
        lease = self.config.lease_timeout
        deadlines.extend(
            w.last_heartbeat + lease
            for w in self.workers.values()
            if w.state in (WorkerState.ALIVE, WorkerState.DRAINING, WorkerState.UNKNOWN)
        )
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------------------ outputs

    def take_effects(self) -> list[Effect]:
        effects, self._effects = self._effects, []
        return effects

    def has_changes(self) -> bool:
        return bool(
            self._dirty_runs
            or self._dirty_jobs
            or self._new_jobs
            or self._dirty_attempts
            or self._dirty_workers
        )

    def take_changes(self) -> Changes:

        def job(key: tuple[str, str]) -> Job:
            return self.runs[key[0]].jobs[key[1]]

        changes = Changes(
            runs=[self.runs[r].to_row() for r in self._dirty_runs],
            new_jobs=Rows(list(self._new_jobs), lambda k: {**job(k).to_row(), "spec": job(k).spec.to_dict()}),
            jobs=[job(k).to_row() for k in self._dirty_jobs if k not in self._new_jobs],
            attempts=[self._attempts[a][1].to_row() for a in self._dirty_attempts],
            workers=[self.workers[w].to_row() for w in self._dirty_workers],
            job_keys=self._dirty_jobs | self._new_jobs.keys(),
            run_ids=self._dirty_runs,
            ended_attempts=self._ended_attempts,
        )
        self._dirty_runs, self._dirty_jobs, self._dirty_attempts = set(), set(), set()
        self._new_jobs = {}
        self._dirty_workers, self._ended_attempts = set(), set()
        return changes

    # ------------------------------------------------------------------ events: clients

    def submit_run(
        self,
        run_id: str,
        name: str,
        specs: Sequence[JobSpec],
        now: float,
        labels: dict[str, str] | None = None,
        agent_run_id: str = "",
        submitted_by: str = "",
        ended: Run | None = None,
        open_for: float = 0.0,
    ) -> tuple[Run, bool]:
        """Accept a run, or return the existing one when `run_id` was already submitted, by the
        same submitter, with the same jobs.

        Returns (run, existed). Raises InvalidSpec (or NotYours) before changing anything. `ended`:
        the run of that id read from the store, when it has ended and left memory. `open_for`:
        seconds the run stays RUNNING though its jobs have all ended, for more to be added.
        """
        check_open_for(open_for)
        self._check_count(0, specs)
        specs = expand_replicas(specs)
        existing = self.runs.get(run_id) or ended
        if existing is not None and existing.submitted_by != submitted_by:
            raise NotYours(
                f"run id {run_id!r} was submitted by {describe_submitter(existing.submitted_by)}, not by "
                "this credential; submit under another run id"
            )
        if existing is not None:
            same = set(existing.jobs) == {s.id for s in specs} and all(
                existing.jobs[s.id].spec == s for s in specs
            )
            if not same:
                raise InvalidSpec(
                    f"run id {run_id!r} already exists with other jobs; submit under a new run id"
                )
            return existing, True
        if not specs:
            raise InvalidSpec("a run needs at least one job")
        self._validate_new_jobs(specs, existing={})
        self._run_seq += 1
        run = Run(
            id=run_id,
            name=name or run_id,
            labels=dict(labels or {}),
            agent_run_id=agent_run_id,
            created_at=now,
            seq=self._run_seq,
            submitted_by=submitted_by,
            open_until=now + open_for if open_for else 0.0,
        )
        self.runs[run_id] = run
        self._dirty_runs.add(run_id)
        self._add_jobs(run, specs, now)
        self._settle(now)
        return run, False

    def add_jobs(self, run_id: str, specs: Sequence[JobSpec], now: float, open_for: float = 0.0) -> list[Job]:
        """Extend a running run. New jobs may depend on any job of the run. `open_for`: the run
        is held open at least that many seconds from now (see submit_run)."""
        check_open_for(open_for)
        run = self.run(run_id)
        if run.state is not RunState.RUNNING:
            raise InvalidSpec(
                f"run {run_id} has ended ({run.state.value}); jobs can only be added to a running run"
            )
        if not specs:
            raise InvalidSpec("no jobs to add")
        self._check_count(len(run.jobs), specs)
        specs = expand_replicas(specs, run.jobs.values())
        self._validate_new_jobs(specs, existing=run.jobs)
        jobs = self._add_jobs(run, specs, now)
        if now + open_for > run.open_until:
            run.open_until = now + open_for
            self._dirty_runs.add(run.id)
        self._settle(now)
        return jobs

    def cancel(self, ref: str, now: float, reason: str = "cancelled by user") -> list[str]:
        """Cancel a whole run (by run id) or one job and its descendants. Returns the cancelled refs."""
        run = self.runs.get(ref)
        if run is not None and run.open_until:  # a cancelled run is not held open for more
            run.open_until = 0.0
            self._dirty_runs.add(run.id)
        jobs = list(run.jobs.values()) if run is not None else [self.resolve(ref)]
        cancelled: list[str] = []
        for job in jobs:
            cancelled.extend(self._cancel_job(job, now, reason))
        self._settle(now)
        return cancelled

    # ------------------------------------------------------------------ events: attempts and time

    def attempt_finished(self, worker_id: str, attempt_id: str, exit: AttemptExit, now: float) -> None:
        # The worker may forget the attempt once this is committed, whatever we decide about it.
        self._effects.append(AckFinished(worker_id, attempt_id))
        found = self._attempts.get(attempt_id)
        if found is None:
            self._effects.append(Note(f"rejected result of unknown attempt {attempt_id} from {worker_id}"))
            return
        job, attempt = found
        if attempt.worker_id != worker_id:
            self._effects.append(
                Note(
                    f"rejected result of attempt {attempt_id} from {worker_id}: it was assigned to {attempt.worker_id}"
                )
            )
            return
        if attempt.state.terminal:
            self._effects.append(
                Note(
                    f"rejected late result of attempt {attempt_id} ({job.ref}, attempt {attempt.number}): "
                    f"it was already {attempt.state.value}"
                )
            )
            return
        self._finish(job, attempt, exit, now)
        self._settle(now)

    def tick(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            due, _, key = heapq.heappop(self._timers)
            run = self.runs.get(key[0])
            if run is not None and not key[1]:  # the end of its hold (open_until)
                self._maybe_finish_run(run, now)
                continue
            job = run.jobs.get(key[1]) if run else None
            if job is None:
                continue
            if job.state in (JobState.PENDING, JobState.RESTARTING) and job.not_before == due:
                self._make_ready(job, now)
            elif job.state is JobState.WAITING_APPROVAL and job.gate_deadline == due:
                job.decision = {"decision": "expired", "by": "", "at": now, "comment": ""}
                self._end_job(
                    job, JobState.FAILED, now, f"approval timed out after {job.spec.approval.timeout:g}s"
                )
            elif job.state is JobState.READY and job.ready_at + job.spec.unplaceable_after == due:
                why = self._unplaceable(job)
                if why:
                    after = job.spec.unplaceable_after
                    self._end_job(job, JobState.FAILED, now, f"no worker can run it: {why} for {after:g}s")
        lease = self.config.lease_timeout
        for worker in list(self.workers.values()):
            if worker.state.gone or now - worker.last_heartbeat < lease:
                continue
            if worker.state is WorkerState.UNKNOWN:
                reason = f"did not reconnect within {lease:g}s of the master restarting"
            else:
                reason = f"sent no heartbeat for {lease:g}s"
                self._effects.append(DisconnectWorker(worker.id, reason))
            self.worker_disconnected(worker.id, now, reason)
        self._settle(now)

    # ------------------------------------------------------------------ transitions

    def _check_count(self, existing: int, specs: Sequence[JobSpec]) -> None:
        """Refuse a run that would grow past jobs_per_run, counting replicas before they exist."""
        total = existing + sum(max(s.replicas, 1) if s.is_service else 1 for s in specs)
        limits = self.config.limits
        if total > limits.jobs_per_run:
            raise InvalidSpec(limits.refusal("jobs_per_run", f"the run would have {total:,} jobs"))

    def _validate_new_jobs(self, specs: Sequence[JobSpec], existing: dict[str, Job]) -> None:
        self._check_count(len(existing), specs)
        seen: set[str] = set()
        for spec in specs:
            spec.validate(self.config.limits)
            if spec.id in seen:
                raise InvalidSpec(f"duplicate job id {spec.id!r}: job ids must be unique within a run")
            seen.add(spec.id)
        check_graph({s.id: list(s.parents) for s in specs}, existing)

    def _add_jobs(self, run: Run, specs: Sequence[JobSpec], now: float) -> list[Job]:
        new: list[Job] = []
        for spec in specs:
            job = Job(run_id=run.id, spec=spec, created_at=now, order=next(self._job_order))
            run.jobs[spec.id] = job
            run.unfinished += 1
            self._runs_by_job_id.setdefault(spec.id, []).append(run.id)
            self._new_jobs[job.key] = None
            if spec.is_service:
                self.services.setdefault(spec.service_id, []).append(job.key)
                run.services += 1
            new.append(job)
        for job in new:
            self._link(run, job)
        for job in new:
            if job.state is JobState.PENDING:
                self._decide(job, now)
        return new

    def _move(self, job: Job, to: JobState) -> None:
        """The one place a job's state changes: held to JOB_TRANSITIONS, and marked for the store."""
        if to not in JOB_TRANSITIONS[job.state]:
            self._illegal(f"job {job.ref}: {job.state.value} -> {to.value}")
        job.state = to
        self._dirty_jobs.add(job.key)

    def _move_attempt(self, attempt: Attempt, to: AttemptState) -> None:
        """The one place an attempt's state changes: held to ATTEMPT_TRANSITIONS, marked for the store."""
        if to not in ATTEMPT_TRANSITIONS[attempt.state]:
            self._illegal(
                f"attempt {attempt.id} of {attempt.run_id}/{attempt.job_id}: {attempt.state.value} -> {to.value}"
            )
        attempt.state = to
        self._dirty_attempts.add(attempt.id)

    def _illegal(self, what: str) -> None:
        why = f"{what} is not in the transition table"
        if self.config.strict_transitions:
            raise IllegalTransition(why)
        self._effects.append(Note(why + " (a bug; done anyway)"))

    def _push_timer(self, job: Job) -> None:
        heapq.heappush(self._timers, (job.not_before, next(self._timer_seq), job.key))

    def _make_ready(self, job: Job, now: float) -> None:
        if not self._enqueue(job, now):
            return
        self._move(job, JobState.READY)
        job.not_before = 0.0
        job.ready_at = now
        if job.reason.startswith("delayed"):
            job.reason = ""
        self._push_unplaceable_timer(job)

    def _push_unplaceable_timer(self, job: Job) -> None:
        """A job with `unplaceable_after` is looked at again then (`tick`): still READY, and no
        connected worker could run it, it fails."""
        if job.spec.unplaceable_after > 0:
            due = job.ready_at + job.spec.unplaceable_after
            heapq.heappush(self._timers, (due, next(self._timer_seq), job.key))

    def _enqueue(self, job: Job, now: float) -> bool:
        """Queue a job for placement; False (and the job failed) when its hard affinity cannot be met."""
        run = self.runs[job.run_id]
        node, prefer = job.spec.node, ""
        if job.spec.affinity:
            parent = run.jobs[job.parents[0]]
            if job.spec.affinity == "hard":
                worker = self.workers.get(parent.worker_id)
                if worker is None or worker.state.gone:
                    name = worker.name if worker else parent.worker_id or "?"
                    self._fail(job, now, f"affinity: worker {name} that ran parent {parent.id} is gone")
                    return False
                node = parent.worker_id
            else:
                prefer = parent.worker_id
        attempt = len(job.attempts) + 1
        tags = job.spec.retries.tags_for(attempt, job.spec.tags)
        exclude = frozenset()
        if job.spec.retries.fallback:  # fallback compute: never again where it failed
            exclude = frozenset(a.worker_id for a in job.attempts if a.state is AttemptState.FAILED)
        need = job.spec.need
        requirement = self._requirements.get((tags, node, exclude, need))
        if requirement is None:  # a few per cluster, shared by every job that asks the same
            requirement = self._requirements[(tags, node, exclude, need)] = Requirement(
                tags, node, exclude, need
            )
        self.queues.push(
            job.key,
            requirement,
            job.spec.priority,
            slots=job.spec.slots,
            prefer=prefer,
            avoid=job.avoid,
            order=job.order,
        )
        self._dispatch_needed = True
        return True

    def _mark_running(self, job: Job, attempt: Attempt, pid: int, started_at: float, now: float) -> None:
        self._move_attempt(attempt, AttemptState.RUNNING)
        attempt.pid = pid
        attempt.started_at = started_at
        if job.current is attempt and not job.state.terminal:
            self._move(job, JobState.STARTING if job.spec.is_service else JobState.RUNNING)
            job.reason = "waiting for its health check" if job.spec.is_service else ""
            if not job.started_at:
                job.started_at = started_at
            if attempt.healthy and job.spec.is_service:
                self._became_healthy(job, now)

    def _stop_job(self, job: Job, now: float, reason: str, state: JobState) -> None:
        """End a job on purpose (cancel, stop, replaced): its running process is told to stop."""
        attempt = job.current
        if attempt is not None and not attempt.state.terminal:
            worker = self.workers.get(attempt.worker_id)
            if worker is not None and not worker.state.gone:
                self._effects.append(CancelAttempt(attempt.worker_id, attempt.id, reason))
            else:
                self._close_attempt(job, attempt, AttemptState.CANCELLED, now, reason)
        self._end_job(job, state, now, reason)

    def _release(self, attempt: Attempt, spec: JobSpec) -> None:
        worker = self.workers.get(attempt.worker_id)
        if worker is not None and worker.release(attempt, spec.slots, spec.need):
            self._dispatch_needed = True

    def _close_attempt(
        self,
        job: Job,
        attempt: Attempt,
        state: AttemptState,
        now: float,
        reason: str = "",
        exit: AttemptExit | None = None,
    ) -> None:
        self._release(attempt, job.spec)
        self._move_attempt(attempt, state)
        attempt.ended_at = (exit.ended_at if exit and exit.ended_at else 0.0) or now
        attempt.reason = reason
        if exit is not None:
            attempt.exit_code = exit.exit_code
            attempt.signal = exit.signal
            attempt.log_size = exit.log_size
        self._ended_attempts.add(attempt.id)

    def _requeue_unstarted(self, job: Job, attempt: Attempt, now: float, reason: str) -> None:
        """An attempt whose process never started is void: closed (its late reports are still
        rejected) and taken out of the job's attempts, so attempt numbers count real starts only.
        The job goes back to the queue, preferably to another worker, counting nothing against it."""
        self._close_attempt(job, attempt, AttemptState.CANCELLED, now, reason)
        attempt.void = True
        job.attempts.remove(attempt)
        job.voided += (attempt.id,)
        if job.state.terminal:
            return
        job.avoid = attempt.worker_id
        self._make_ready(job, now)
        job.reason = f"requeued: {reason}"

    def _cancel_job(self, job: Job, now: float, reason: str) -> list[str]:
        """Cancel a job; its waiting dependents follow it (CANCELLED, unless a trigger rule says run)."""
        if job.state.terminal:
            return []
        run = self.runs[job.run_id]
        before = [j for j in run.jobs.values() if not j.state.terminal]
        self._stop_job(job, now, reason, JobState.CANCELLED)
        return [j.ref for j in before if j.state is JobState.CANCELLED]

    def _end_job(self, job: Job, state: JobState, now: float, reason: str) -> None:
        self.queues.remove(job.key)
        self._move(job, state)
        job.reason = reason
        job.ended_at = now
        job.not_before = 0.0
        run = self.runs[job.run_id]
        run.unfinished -= 1
        self._notify_children(job, now)
        self._maybe_finish_run(run, now)

    def _settle(self, now: float) -> None:
        """Place ready jobs on free slots; called at the end of every event."""
        if not self._dispatch_needed:
            return
        self._dispatch_needed = False
        for key, worker in self.queues.place(self.workers.values(), self._avoid_for):
            job = self.runs[key[0]].jobs[key[1]]
            attempt = Attempt(
                id=self._new_id(),
                run_id=job.run_id,
                job_id=job.id,
                number=len(job.attempts) + 1,
                worker_id=worker.id,
                assigned_at=now,
            )
            job.attempts.append(attempt)
            self._move(job, JobState.ASSIGNED)
            job.worker_id = worker.id
            job.avoid = ""
            worker.hold(attempt, job.spec.slots, job.spec.need)
            self._attempts[attempt.id] = (job, attempt)
            self._dirty_attempts.add(attempt.id)
            spec = (
                job.spec
                if tuple(job.parents) == job.spec.parents
                else replace(job.spec, parents=tuple(job.parents))
            )
            self._effects.append(
                Assign(
                    worker.id,
                    attempt.id,
                    job.run_id,
                    job.id,
                    attempt.number,
                    spec,
                    self._service_env(job),
                    attempt.gpus,
                    self._inputs(job) if job.spec.is_function else {},
                )
            )

    def _avoid_for(self, key: tuple[str, str]) -> set[str]:
        """Workers a job should not go to when another is free: the one that just failed or lost it,
        and, for a service replica, those already running another instance of it (spread)."""
        job = self.runs[key[0]].jobs[key[1]]
        avoid = {job.avoid} if job.avoid else set()
        if job.spec.is_service:
            for other in self.services.get(job.spec.service_id, ()):
                sibling = self.runs[other[0]].jobs[other[1]]
                current = sibling.current
                if sibling is not job and current is not None and not current.state.terminal:
                    avoid.add(current.worker_id)
        return avoid
