"""The control plane's state machine: events in, effects out, no I/O.

`ClusterState` owns every run, job, attempt and worker the master knows. The master feeds it
events (a submission, a worker's hello, an attempt's exit, the passing of time) and carries out
the effects it emits (send this assignment, cancel that attempt) only after `take_changes()`
has been written to the store. Everything that decides something lives here, so it is tested
without processes, sockets or clocks (`now` is always passed in).
"""

from __future__ import annotations

import heapq
import itertools
import json
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from titan_runtime.core.dag import check_graph
from titan_runtime.core.effects import (
    AckFinished,
    Assign,
    AttemptExit,
    CancelAttempt,
    Changes,
    DisconnectWorker,
    DrainWorker,
    Effect,
    Note,
    Welcome,
    WorkerHello,
)
from titan_runtime.core.expr import ExpressionError, evaluate
from titan_runtime.core.limits import DEFAULT_LIMITS, Limits
from titan_runtime.core.model import (
    ATTEMPT_TRANSITIONS,
    JOB_TRANSITIONS,
    MAX_RESULT_BYTES,
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
from titan_runtime.core.scheduler import ReadyQueues, Requirement


class NotFound(KeyError):
    """An unknown run or job reference; str() is a sentence a user can act on."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


@dataclass(frozen=True)
class ClusterConfig:
    heartbeat_interval: float = 1.0
    lease_timeout: float = 10.0  # a worker silent this long is declared dead
    limits: Limits = DEFAULT_LIMITS
    #: A change of state outside JOB_TRANSITIONS raises IllegalTransition (tests); otherwise it is
    #: done and said in a Note, so that a bug in one job's path never stops the master.
    strict_transitions: bool = True


class NotYours(PermissionError):
    """A request on something another credential made, that only its maker may have."""


def describe_submitter(submitted_by: str) -> str:
    """ "run:R" (a job's credential), "token:N" (a named token) or "" (the cluster's)."""
    kind, _, name = submitted_by.partition(":")
    return {"run": f"a job of run {name}", "token": f"the token {name}"}.get(kind, "an admin")


class BadResult(ValueError):
    """A committed result that is not what it must be (JSON, of the right shape)."""


def parse_result(text: str | None) -> Any:
    """A job's committed result as a value (None when it set none). Raises BadResult, nothing else:
    results come from workers, and nothing a worker sends may stop the master."""
    if not text:
        return None
    try:
        return json.loads(text)
    except Exception as exc:  # ValueError, or RecursionError for JSON nested too deep
        raise BadResult(f"its result is not valid JSON ({type(exc).__name__})") from None


def _result_problem(text: str) -> str:
    if len(text) > MAX_RESULT_BYTES // 4 and len(text.encode()) > MAX_RESULT_BYTES:
        return f"the job's result is over the {MAX_RESULT_BYTES // (1024 * 1024)} MB limit"
    try:
        parse_result(text)
    except BadResult as exc:
        return f"the worker reported a bad result: {exc}"
    return ""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def describe_exit(exit: AttemptExit) -> str:
    """The reason a user reads for an attempt's end."""
    if exit.reason:
        return exit.reason
    if exit.outcome == "succeeded":
        return ""
    if exit.signal:
        return f"killed by {exit.signal}"
    if exit.exit_code is not None:
        return f"exit code {exit.exit_code}"
    return exit.outcome


_FAILED_STATES = (JobState.FAILED, JobState.UPSTREAM_FAILED)
_LIVE_SERVICE_STATES = (JobState.STARTING, JobState.HEALTHY, JobState.RESTARTING)


def expand_replicas(specs: Sequence[JobSpec], existing: Iterable[Job] = ()) -> list[JobSpec]:
    """A service with `replicas: N` becomes N jobs `ID.1` ... `ID.N` sharing the service id `ID`;
    jobs that depend on `ID` depend on every replica."""
    groups: dict[str, tuple[str, ...]] = {
        job.spec.service: () for job in existing if job.spec.service and job.spec.service != job.id
    }
    for job in existing:
        if job.spec.service in groups:
            groups[job.spec.service] += (job.id,)
    out: list[JobSpec] = []
    for spec in specs:
        if spec.is_service and spec.replicas > 1:
            ids = tuple(f"{spec.id}.{n}" for n in range(1, spec.replicas + 1))
            groups[spec.id] = ids
            out.extend(replace(spec, id=job_id, service=spec.id, replicas=1) for job_id in ids)
        else:
            out.append(replace(spec, service=spec.service_id) if spec.is_service else spec)
    if not groups:
        return out
    return [
        replace(s, parents=tuple(p for parent in s.parents for p in groups.get(parent, (parent,))))
        if any(parent in groups for parent in s.parents)
        else s
        for s in out
    ]


def reported_ports(spec: JobSpec, ports: Mapping[str, int]) -> dict[str, int]:
    """What a worker says a service listens on, kept only where it can be: the spec's port names,
    real port numbers, a fixed port as fixed. Anything else is dropped, so a worker cannot
    advertise what the job never asked for."""
    if not spec.is_service:
        return {}
    return {
        name: port
        for name, port in ports.items()
        if name in spec.port_names and 0 < port < 65536 and (not spec.port or port == spec.port)
    }


def env_name(service_id: str) -> str:
    """TITAN_SERVICE_<ID>_ADDR: the id upper-cased, anything but letters and digits as '_'."""
    return "TITAN_SERVICE_" + re.sub(r"[^A-Za-z0-9]", "_", service_id).upper() + "_ADDR"


class ClusterState:
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
        self._requirements: dict[tuple[frozenset[str], str, frozenset[str]], Requirement] = {}
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
        if "/" in ref:
            run_id, _, job_id = ref.partition("/")
            run = self.run(run_id)
            job = run.jobs.get(job_id)
            if job is None:
                raise NotFound(
                    f"run {run_id} has no job {job_id!r}; its jobs: {', '.join(list(run.jobs)[:20])}"
                )
            return job
        run = self.runs.get(ref)
        if run is not None:
            if len(run.jobs) == 1:
                return next(iter(run.jobs.values()))
            raise NotFound(f"{ref} is a run of {len(run.jobs)} jobs; address one of them as {ref}/JOB")
        run_ids = self._runs_by_job_id.get(ref)
        if run_ids:
            return self.runs[run_ids[-1]].jobs[ref]
        raise NotFound(f"no job {ref!r}: use the id that submit printed, or RUN/JOB for a job in a run")

    def attempt(self, attempt_id: str) -> tuple[Job, Attempt] | None:
        return self._attempts.get(attempt_id)

    def waiting_reason(self, job: Job) -> str:
        """Why a READY job has not started yet, in words."""
        requirement = self.queues.requirement_of(job.key)
        if requirement is None:
            return job.reason
        live = [w for w in self.workers.values() if w.schedulable]
        if not any(requirement.admits(w) for w in live):
            if requirement.node:
                name = (
                    self.workers[requirement.node].name
                    if requirement.node in self.workers
                    else requirement.node
                )
                return f"waiting for worker {name}"
            return f"waiting for a worker with {requirement.describe()}"
        if not any(requirement.admits(w) and w.slots >= job.spec.slots for w in live):
            return f"waiting for a worker with {job.spec.slots} slots and {requirement.describe()}"
        ahead = self.queues.position(job.key)
        return f"waiting for a free slot ({ahead} queued ahead)" if ahead else "waiting for a free slot"

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
            new_jobs=[{**job(k).to_row(), "spec": job(k).spec.to_dict()} for k in self._new_jobs],
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
    ) -> tuple[Run, bool]:
        """Accept a run, or return the existing one when `run_id` was already submitted, by the
        same submitter, with the same jobs.

        Returns (run, existed). Raises InvalidSpec (or NotYours) before changing anything.
        """
        self._check_count(0, specs)
        specs = expand_replicas(specs)
        existing = self.runs.get(run_id)
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
        )
        self.runs[run_id] = run
        self._dirty_runs.add(run_id)
        self._add_jobs(run, specs, now)
        self._settle(now)
        return run, False

    def add_jobs(self, run_id: str, specs: Sequence[JobSpec], now: float) -> list[Job]:
        """Extend a running run. New jobs may depend on any job of the run."""
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
        self._settle(now)
        return jobs

    def cancel(self, ref: str, now: float, reason: str = "cancelled by user") -> list[str]:
        """Cancel a whole run (by run id) or one job and its descendants. Returns the cancelled refs."""
        run = self.runs.get(ref)
        jobs = list(run.jobs.values()) if run is not None else [self.resolve(ref)]
        cancelled: list[str] = []
        for job in jobs:
            cancelled.extend(self._cancel_job(job, now, reason))
        self._settle(now)
        return cancelled

    # ------------------------------------------------------------------ events: workers

    def worker_connected(self, hello: WorkerHello, now: float) -> Welcome:
        worker = self.workers.get(hello.worker_id)
        if worker is None:
            worker = Worker(id=hello.worker_id, name=hello.name, registered_at=now)
            self.workers[worker.id] = worker
        elif worker.state is WorkerState.DEAD:
            self._effects.append(
                Note(f"worker {worker.name} ({worker.id}) came back after being declared dead")
            )
        elif worker.state is WorkerState.LEFT:
            self._effects.append(Note(f"worker {worker.name} ({worker.id}) came back after leaving"))
        worker.name = hello.name

        worker.host = hello.host
        worker.pid = hello.pid
        worker.tags = hello.tags
        worker.slots = max(1, hello.slots)
        worker.cpu_count = hello.cpu_count
        worker.memory_bytes = hello.memory_bytes
        worker.gpus = hello.gpus
        worker.version = hello.version
        worker.pool, worker.provider, worker.launch_id = hello.pool, hello.provider, hello.launch_id
        worker.state = WorkerState.DRAINING if hello.draining else WorkerState.ALIVE
        worker.last_heartbeat = now
        self._dirty_workers.add(worker.id)

        superseded: list[str] = []
        adopted: dict[str, int] = {}
        held_ids = set()
        for held in hello.held:
            held_ids.add(held.attempt_id)
            found = self._attempts.get(held.attempt_id)
            if found is None:
                superseded.append(held.attempt_id)
                self._effects.append(
                    Note(f"worker {worker.name} holds unknown attempt {held.attempt_id}: superseded")
                )
                continue
            job, attempt = found
            if attempt.worker_id != worker.id:
                # Never this worker's: a claim on another worker's attempt changes nothing of it.
                superseded.append(held.attempt_id)
                self._effects.append(
                    Note(f"worker {worker.name} holds attempt {attempt.id} of another worker: superseded")
                )
                continue
            current = not attempt.state.terminal and not job.state.terminal and job.current is attempt
            if not current:
                superseded.append(held.attempt_id)
                if not attempt.state.terminal:
                    # The job ended without it (cancelled while the worker was away).
                    self._close_attempt(
                        job, attempt, AttemptState.CANCELLED, now, reason=job.reason or "cancelled"
                    )
                self._effects.append(
                    Note(
                        f"attempt {attempt.id} of {job.ref} on worker {worker.name} is superseded; telling it to stop"
                    )
                )
                continue
            adopted[attempt.id] = held.log_size
            if attempt.id not in worker.attempts:
                worker.attempts.add(attempt.id)
                worker.used_slots += job.spec.slots
            if held.exit is not None:
                self._finish(job, attempt, held.exit, now)
                self._effects.append(AckFinished(worker.id, attempt.id))
            else:
                # The worker is the authority on what it runs: its ports and health may not have been
                # committed before the master went down.
                attempt.host = held.host or attempt.host
                attempt.ports = reported_ports(job.spec, held.ports) or attempt.ports
                attempt.healthy = attempt.healthy or held.healthy
                self._mark_running(job, attempt, held.pid, held.started_at or now, now)

        # What we believe this worker holds but it does not: never received, or lost with a restart.
        for attempt_id in list(worker.attempts):
            if attempt_id in held_ids:
                continue
            job, attempt = self._attempts[attempt_id]
            if attempt.state is AttemptState.ASSIGNED:
                self._requeue_unstarted(job, attempt, now, f"worker {worker.name} never received it")
            else:
                self._lose(job, attempt, now, f"worker {worker.name} restarted without it")
        self._dispatch_needed = True
        self._settle(now)
        return Welcome(superseded=tuple(superseded), log_offsets=adopted)

    def worker_disconnected(self, worker_id: str, now: float, reason: str) -> None:
        """The worker's stream ended without a goodbye, or its lease ran out: it is dead."""
        self._worker_gone(worker_id, now, reason, WorkerState.DEAD)

    def worker_left(self, worker_id: str, now: float) -> None:
        """The worker said it was leaving (drained or stopped) before its stream ended."""
        self._worker_gone(worker_id, now, "left", WorkerState.LEFT)

    def request_drain(
        self, worker_id: str, deadline: float, now: float, reason: str = "drain requested"
    ) -> None:
        worker = self.workers.get(worker_id)
        if worker is None or worker.state.gone:
            raise NotFound(f"no live worker {worker_id!r}")
        self.set_draining(worker_id, now)
        self._effects.append(DrainWorker(worker_id, deadline, reason))

    def find_worker(self, name_or_id: str) -> Worker:
        """A live worker by id, or by name when exactly one live worker has it."""
        worker = self.workers.get(name_or_id)
        if worker is not None and not worker.state.gone:
            return worker
        named = [w for w in self.workers.values() if w.name == name_or_id and not w.state.gone]
        if len(named) == 1:
            return named[0]
        if named:
            raise NotFound(
                f"{len(named)} live workers are named {name_or_id!r}; use its id (titan-runtime workers)"
            )
        raise NotFound(f"no live worker {name_or_id!r}: list them with `titan-runtime workers`")

    def _worker_gone(self, worker_id: str, now: float, reason: str, state: WorkerState) -> None:
        worker = self.workers.get(worker_id)
        if worker is None or worker.state.gone:
            return
        worker.state = state
        worker.last_heartbeat = now
        self._dirty_workers.add(worker_id)
        if state is WorkerState.DEAD:
            self._effects.append(Note(f"worker {worker.name} ({worker_id}) declared dead: {reason}"))
        else:
            self._effects.append(Note(f"worker {worker.name} ({worker_id}) left"))
        for attempt_id in sorted(worker.attempts):
            job, attempt = self._attempts[attempt_id]
            if state is WorkerState.LEFT and attempt.state is AttemptState.ASSIGNED:
                # It handed back all it had started before leaving: this one it never received.
                self._requeue_unstarted(job, attempt, now, f"worker {worker.name} left before starting it")
            else:
                self._lose(
                    job, attempt, now, f"worker {worker.name} {reason}", counted=state is WorkerState.DEAD
                )
        # Jobs pinned to it by hard affinity can never run now.
        for key in self.queues.queued():
            requirement = self.queues.requirement_of(key)
            if requirement is not None and requirement.node == worker_id:
                job = self.runs[key[0]].jobs[key[1]]
                if job.spec.affinity == "hard":
                    self._fail(job, now, f"affinity: worker {worker.name} that ran its parent is gone")
        self._settle(now)

    def set_draining(self, worker_id: str, now: float) -> None:
        worker = self.workers.get(worker_id)
        if worker is not None and worker.state is WorkerState.ALIVE:
            worker.state = WorkerState.DRAINING
            self._dirty_workers.add(worker_id)

    def heartbeat(
        self, worker_id: str, now: float, cpu_percent: float = 0.0, memory_percent: float = 0.0
    ) -> None:
        worker = self.workers.get(worker_id)
        if worker is None or worker.state.gone:
            return
        worker.last_heartbeat = now
        worker.cpu_percent = cpu_percent
        worker.memory_percent = memory_percent

    def attempt_started(
        self,
        worker_id: str,
        attempt_id: str,
        pid: int,
        started_at: float,
        now: float,
        host: str = "",
        ports: dict[str, int] | None = None,
    ) -> None:
        found = self._attempts.get(attempt_id)
        if found is None or found[1].worker_id != worker_id:
            self._effects.append(
                Note(f"rejected start report for unknown attempt {attempt_id} from {worker_id}")
            )
            self._effects.append(CancelAttempt(worker_id, attempt_id, "unknown attempt"))
            return
        job, attempt = found
        if attempt.state.terminal:
            self._effects.append(
                Note(f"rejected start report for attempt {attempt_id}: it is {attempt.state.value}")
            )
            self._effects.append(CancelAttempt(worker_id, attempt_id, f"superseded ({attempt.state.value})"))
            return
        attempt.host, attempt.ports = host, reported_ports(job.spec, ports or {})
        self._mark_running(job, attempt, pid, started_at or now, now)
        self._settle(now)

    def attempt_healthy(self, worker_id: str, attempt_id: str, now: float) -> None:
        """A service's health check passed for the first time in this attempt."""
        found = self._attempts.get(attempt_id)
        if found is None or found[1].worker_id != worker_id or found[1].state.terminal:
            return
        job, attempt = found
        attempt.healthy = True
        self._dirty_attempts.add(attempt.id)
        if job.current is attempt and job.state is JobState.STARTING:
            self._became_healthy(job, now)
        self._settle(now)

    # ------------------------------------------------------------------ events: approvals

    def decide_gate(self, ref: str, approved: bool, by: str, comment: str, now: float) -> Job:
        """Approve or reject a job's gate. Refused unless the gate is open (reached, not decided)."""
        job = self.resolve(ref)
        if not job.spec.approval.required:
            raise InvalidSpec(f"{job.ref} has no approval gate")
        if job.state is not JobState.WAITING_APPROVAL:
            if job.decision is not None:
                raise InvalidSpec(f"the gate of {job.ref} was already decided: {job.decision['decision']}")
            raise InvalidSpec(f"the gate of {job.ref} is not reached yet: the job is {job.state.value}")
        job.decision = {
            "decision": "approved" if approved else "rejected",
            "by": by,
            "at": now,
            "comment": comment,
        }
        if approved:
            self._end_job(job, JobState.SUCCEEDED, now, "")
        else:
            why = f"rejected by {by or 'someone'}" + (f": {comment}" if comment else "")
            self._end_job(job, JobState.FAILED, now, why)
        self._settle(now)
        return job

    def open_gates(self) -> list[Job]:
        return [
            j for run in self.runs.values() for j in run.jobs.values() if j.state is JobState.WAITING_APPROVAL
        ]

    # ------------------------------------------------------------------ events: feedback loops

    def add_iteration(
        self, run_id: str, job_ids: Sequence[str], after: str, max_iterations: int, now: float
    ) -> list[Job]:
        """Enqueue the next iteration of a sub-graph of the run, to start once `after` has succeeded.

        The sub-graph is the jobs `job_ids` (by their first iteration's ids). Iteration k of job X is
        X@k; its parents inside the sub-graph are their iteration-k twins, the others are kept, and the
        sub-graph's roots also wait for `after`. Jobs waiting on the previous iteration's jobs wait on
        the new one instead. Refused past `max_iterations`.
        """
        run = self.run(run_id)
        if run.state is not RunState.RUNNING:
            raise InvalidSpec(f"run {run_id} has ended; no iteration can be added")
        caller = run.jobs.get(after)
        if caller is None:
            raise NotFound(f"run {run_id} has no job {after!r}")
        base = [j.partition("@")[0] for j in job_ids]
        if not base or len(set(base)) != len(base):
            raise InvalidSpec("give the jobs of the loop's sub-graph, each once")
        k = max(caller.spec.iteration, 1) + 1
        if k > max_iterations:
            raise InvalidSpec(
                f"max_iterations={max_iterations} reached: iteration {k} of {', '.join(base)} is refused"
            )
        previous = {b: (b if k == 2 else f"{b}@{k - 1}") for b in base}
        missing = [p for p in previous.values() if p not in run.jobs]
        if missing:
            raise InvalidSpec(f"iteration {k - 1} has no job {missing[0]!r}")
        renamed = {previous[b]: f"{b}@{k}" for b in base}
        specs = []
        for b in base:
            template = run.jobs[previous[b]]
            parents = [renamed.get(p, p) for p in template.parents]
            if not any(p in renamed for p in template.parents) and after not in parents:
                parents.append(after)
            specs.append(
                replace(
                    template.spec,
                    id=renamed[previous[b]],
                    parents=tuple(parents),
                    map_over=renamed.get(template.spec.map_over, template.spec.map_over),
                    iteration=k,
                )
            )
        self._validate_new_jobs(specs, existing=run.jobs)
        # Jobs outside the loop that wait on its previous iteration wait on this one instead.
        rewired = [
            job
            for job in run.jobs.values()
            if job.state is JobState.PENDING
            and job.id not in renamed
            and any(p in renamed for p in job.parents)
        ]
        for job in rewired:
            for old in [p for p in job.parents if p in renamed]:
                parent = run.jobs[old]
                parent.children.remove(job.id)
                if not parent.released:
                    job.waiting_on -= 1
            job.parents = [renamed.get(p, p) for p in job.parents]
            self._dirty_jobs.add(job.key)
        added = self._add_jobs(run, specs, now)
        for job in rewired:
            for new_parent in [p for p in job.parents if p in renamed.values()]:
                run.jobs[new_parent].children.append(job.id)
                job.waiting_on += 1
        self._settle(now)
        return added

    # ------------------------------------------------------------------ events: services

    def service_jobs(self, service_id: str) -> list[Job]:
        """Every job that ran or runs this service, oldest deployment first."""
        found = [self.runs[r].jobs[j] for r, j in self.services.get(service_id, ())]
        if not found:
            raise NotFound(f"no service {service_id!r}: list them with `titan-runtime services`")
        return found

    def live_service_jobs(self, service_id: str) -> list[Job]:
        return [job for job in self.service_jobs(service_id) if not job.state.terminal]

    def stop_service(self, service_id: str, now: float, reason: str = "stopped by user") -> list[str]:
        """Stop every live instance of a service for good (its whole process tree); no restart."""
        stopped = []
        for job in self.live_service_jobs(service_id):
            self._stop_job(job, now, reason, JobState.STOPPED)
            stopped.append(job.ref)
        self._settle(now)
        return stopped

    def restart_service(self, service_id: str, now: float) -> list[str]:
        """Restart every live instance now: stop its process, start a new one (not counted as a crash)."""
        restarted = []
        for job in self.live_service_jobs(service_id):
            attempt = job.current
            if attempt is not None and not attempt.state.terminal:
                job.restart_requested = True
                self._effects.append(CancelAttempt(attempt.worker_id, attempt.id, "restart requested"))
            elif job.state is JobState.RESTARTING:
                self._make_ready(job, now)
            restarted.append(job.ref)
        self._settle(now)
        return restarted

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

    # ------------------------------------------------------------------ recovery

    def restore(
        self,
        runs: Iterable[dict[str, Any]],
        jobs: Iterable[dict[str, Any]],
        attempts: Iterable[dict[str, Any]],
        workers: Iterable[dict[str, Any]],
        now: float,
    ) -> None:
        """Rebuild from the store after a master (re)start.

        Workers not known dead become UNKNOWN: they keep their attempts for one lease, to
        reconnect and report what they hold. Nothing terminal is touched. A record that cannot be
        read never stops the master from starting: its job is FAILED saying so (or, for a record
        that names no job, it is skipped), and the master's log says which.
        """
        for row in runs:
            try:
                run = Run.from_row(row)
            except Exception as exc:
                self._skip_record("run", row, exc)
                continue
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
        for row in workers:
            try:
                worker = Worker.from_row(row)
            except Exception as exc:
                self._skip_record("worker", row, exc)
                continue
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
                worker.attempts.add(attempt.id)
                worker.used_slots += job.spec.slots
            else:
                self._lose(job, attempt, now, "its worker was gone when the master restarted")
        for run in sorted(self.runs.values(), key=lambda r: r.seq):
            for job in run.jobs.values():
                if job.state is JobState.READY:
                    self._enqueue(job, now)  # unchanged: nothing to write back
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
        self._dispatch_needed = True
        self._settle(now)

    def _restore_attempts(self, rows: Iterable[dict[str, Any]]) -> None:
        readable: list[Attempt] = []
        for row in rows:
            try:
                readable.append(Attempt.from_row(row))
            except Exception as exc:
                self._skip_record("attempt", row, exc)
        for attempt in sorted(readable, key=lambda a: (a.run_id, a.job_id, a.number, a.void is False)):
            run = self.runs.get(attempt.run_id)
            job = run.jobs.get(attempt.job_id) if run else None
            if job is None:
                self._skip_record("attempt", attempt.to_row(), KeyError("its job has no record"))
                continue
            if not attempt.void:
                job.attempts.append(attempt)
            self._attempts[attempt.id] = (job, attempt)

    def _skip_record(self, kind: str, row: Any, exc: BaseException) -> None:
        self._effects.append(
            Note(f"skipped a {kind} record that cannot be read ({_describe(exc)}): {str(row)[:300]}")
        )

    def _unreadable_job(self, row: Any, exc: BaseException, now: float) -> Job | None:
        """A job whose stored record cannot be read: FAILED (saying why) in place of what it was."""
        run_id = row.get("run_id") if isinstance(row, dict) else None
        job_id = row.get("job_id") if isinstance(row, dict) else None
        if not (isinstance(run_id, str) and isinstance(job_id, str) and job_id):
            self._skip_record("job", row, exc)
            return None
        reason = f"its stored record could not be read when the master restarted ({_describe(exc)})"
        self._effects.append(Note(f"job {run_id}/{job_id}: {reason}"))
        return Job(
            run_id=run_id,
            spec=JobSpec(id=job_id, command=("false",)),
            state=JobState.FAILED,
            reason=reason,
            ended_at=now,
        )

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

    # ------------------------------------------------------------------ dependencies

    @staticmethod
    def _link(run: Run, job: Job) -> str:
        """Enter a job in its parents' child lists (and a mapped instance in its template's).
        Returns the first parent it names that the run does not have (only a damaged store can)."""
        missing = ""
        for parent_id in job.parents:
            parent = run.jobs.get(parent_id)
            if parent is None:
                missing = missing or parent_id
                continue
            parent.children.append(job.id)
            if not parent.released:
                job.waiting_on += 1
        template = run.jobs.get(job.spec.map_of) if job.spec.map_of else None
        if template is not None:
            template.mapped.append(job.id)
        return missing

    def _notify_children(self, job: Job, now: float) -> None:
        """`job` resolved (it ended, or a service became healthy): each child may now decide.

        Through a worklist, not recursion: a child that ends at once (UPSTREAM_FAILED, SKIPPED)
        resolves in turn, and a 100,000-job chain must settle without growing the stack."""
        if job.released:
            return
        job.released = True
        self._released.append(job)
        if self._releasing:
            return
        self._releasing = True
        try:
            while self._released:
                self._release_children(self._released.popleft(), now)
        finally:
            self._releasing = False

    def _release_children(self, job: Job, now: float) -> None:
        run = self.runs[job.run_id]
        for child_id in job.children:
            child = run.jobs[child_id]
            child.waiting_on -= 1
            if child.state is JobState.PENDING and not child.not_before:
                self._decide(child, now)
        if job.spec.map_of:
            self._check_mapped(run.jobs[job.spec.map_of], now)

    def _decide(self, job: Job, now: float) -> None:
        """Apply the job's trigger rule to its parents: wait, run (if its condition holds), or end unrun."""
        verdict, reason = self._trigger(job)
        if verdict == "wait":
            return
        if verdict == "run":
            if job.spec.when:
                try:
                    holds = evaluate(job.spec.when, self._condition_names(job))
                except (ExpressionError, BadResult) as exc:
                    self._end_job(
                        job, JobState.FAILED, now, f"condition {job.spec.when[:200]!r} failed: {exc}"
                    )
                    return
                if not holds:
                    self._end_job(job, JobState.SKIPPED, now, f"condition is false: {job.spec.when}")
                    return
            self._parents_done(job, now)
            return
        state = {"skip": JobState.SKIPPED, "cancel": JobState.CANCELLED}.get(
            verdict, JobState.UPSTREAM_FAILED
        )
        self._end_job(job, state, now, reason)

    def _trigger(self, job: Job) -> tuple[str, str]:
        """("wait" | "run" | "skip" | "fail" | "cancel", reason) from the trigger rule and the parents' states."""
        run = self.runs[job.run_id]
        delivered, skipped, failed, cancelled = [], [], [], []
        for parent_id in job.parents:
            parent = run.jobs[parent_id]
            if parent.delivered:
                taken = parent.branch_taken
                (
                    skipped if parent.spec.branch and taken is not None and job.id not in taken else delivered
                ).append(parent)
            elif parent.state is JobState.SKIPPED:
                skipped.append(parent)
            elif parent.state is JobState.CANCELLED:
                cancelled.append(parent)
            elif parent.state.terminal:  # FAILED, UPSTREAM_FAILED, a service stopped before it was healthy
                failed.append(parent)
        waiting = job.waiting_on > 0
        rule = job.spec.trigger_rule
        if rule == "all_done":
            return ("wait", "") if waiting else ("run", "")
        if rule == "one_success":
            if delivered or not job.parents:
                return "run", ""

            if waiting:
                return "wait", ""
            if failed or cancelled:
                return "fail", f"no parent succeeded (upstream job {(failed or cancelled)[0].id} did not)"
            return "skip", "no parent succeeded (all were skipped)"
        if cancelled:
            return "cancel", self._upstream_reason(cancelled[0], "was cancelled")
        if failed:
            return "fail", self._upstream_reason(failed[0], "failed")

        if rule == "all_success" and skipped:
            first = skipped[0]
            return "skip", (
                f"not chosen by branch {first.id}"
                if first.delivered
                else f"upstream job {first.id} was skipped"
            )
        return ("wait", "") if waiting else ("run", "")

    def _expand_map(self, job: Job, now: float) -> None:
        """map_over: one instance per item of the parent's list result; the job ends when they all have."""
        run = self.runs[job.run_id]
        try:
            items = parse_result(run.jobs[job.spec.map_over].result)
        except BadResult:
            items = None
        if not isinstance(items, list):
            self._end_job(
                job, JobState.FAILED, now, f"map_over: the result of {job.spec.map_over} is not a list"
            )
            return
        limits = self.config.limits
        if len(run.jobs) + len(items) > limits.jobs_per_run:
            what = f"map_over: {len(items):,} items of {job.spec.map_over} would give the run {len(run.jobs) + len(items):,} jobs"
            self._end_job(job, JobState.FAILED, now, limits.refusal("jobs_per_run", what))
            return
        specs = []
        for index, item in enumerate(items):
            env = {**job.spec.env, "TITAN_MAP_INDEX": str(index), "TITAN_MAP_ITEM": json.dumps(item)}
            specs.append(
                replace(
                    job.spec, id=f"{job.id}.{index}", map_over="", map_of=job.id, map_index=index, env=env
                )
            )
        clash = [s.id for s in specs if s.id in run.jobs]
        if clash:
            self._end_job(
                job, JobState.FAILED, now, f"map_over: job id {clash[0]} is already taken in the run"
            )
            return
        self._move(job, JobState.RUNNING)
        job.started_at = job.started_at or now
        job.reason = f"mapped over {len(items)} item(s) of {job.spec.map_over}"
        if not specs:
            self._check_mapped(job, now)
            return
        self._add_jobs(run, specs, now)

    def _check_mapped(self, job: Job, now: float) -> None:
        """A mapped job ends once every instance has: SUCCEEDED with their results in order, or FAILED."""
        if job.state.terminal:
            return
        run = self.runs[job.run_id]
        instances = [run.jobs[i] for i in job.mapped]
        if any(not i.state.terminal for i in instances):
            return
        failed = [i for i in instances if i.state is not JobState.SUCCEEDED]
        if failed:
            self._end_job(
                job,
                JobState.FAILED,
                now,
                f"{len(failed)} of {len(instances)} mapped jobs did not succeed ({failed[0].id}: {failed[0].state.value})",
            )
            return
        try:
            job.result = json.dumps([parse_result(i.result) for i in instances])
        except BadResult as exc:
            self._end_job(job, JobState.FAILED, now, f"map_over: {exc}")
            return
        self._succeed(job, now)

    @staticmethod
    def _upstream_reason(parent: Job, what: str) -> str:
        """Name the job where the trouble started, not the nearest parent it reached us through."""
        if parent.reason.startswith("upstream job "):
            return parent.reason
        return f"upstream job {parent.id} {what}"

    def _condition_names(self, job: Job) -> dict[str, Any]:

        run = self.runs[job.run_id]
        results: dict[str, Any] = {}
        for parent_id in job.parents:
            try:
                results[parent_id] = parse_result(run.jobs[parent_id].result)
            except BadResult as exc:
                raise BadResult(f"parent {parent_id}: {exc}") from None
        names: dict[str, Any] = {}
        for parent_id, value in results.items():
            base = parent_id.partition("@")[0]  # a loop's later iterations answer to their first id too
            for name in (base, parent_id):
                if name.isidentifier():
                    names[name] = value
        names["results"] = results

        return names

    def _parents_done(self, job: Job, now: float) -> None:
        if job.spec.map_over:
            self._expand_map(job, now)
        elif job.spec.delay > 0:
            job.not_before = now + job.spec.delay
            job.reason = f"delayed {job.spec.delay:g}s after becoming ready"
            self._dirty_jobs.add(job.key)
            self._push_timer(job)
        else:
            self._make_ready(job, now)

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
        requirement = self._requirements.get((tags, node, exclude))
        if requirement is None:  # a few per cluster, shared by every job that asks the same
            requirement = self._requirements[(tags, node, exclude)] = Requirement(tags, node, exclude)
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

    def _became_healthy(self, job: Job, now: float) -> None:
        self._move(job, JobState.HEALTHY)
        job.reason = ""
        if not job.healthy_once:
            job.healthy_once = True
            self._notify_children(job, now)
        self._retire_older_deployments(job.spec.service_id, now)

    def _retire_older_deployments(self, service_id: str, now: float) -> None:
        """Redeploy: once every instance of the newest deployment is HEALTHY, stop the older ones."""
        jobs = self.service_jobs(service_id)
        newest_run = jobs[-1].run_id
        newest = [j for j in jobs if j.run_id == newest_run]
        if not all(j.state is JobState.HEALTHY for j in newest):
            return
        for job in jobs:
            if job.run_id != newest_run and not job.state.terminal:
                self._stop_job(job, now, f"replaced by the deployment in run {newest_run}", JobState.STOPPED)

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

    def _release(self, attempt: Attempt, slots: int) -> None:

        worker = self.workers.get(attempt.worker_id)
        if worker is not None and attempt.id in worker.attempts:
            worker.attempts.discard(attempt.id)
            worker.used_slots -= slots
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
        self._release(attempt, job.spec.slots)
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
        if job.state.terminal:
            return
        job.avoid = attempt.worker_id
        self._make_ready(job, now)
        job.reason = f"requeued: {reason}"

    def _finish(self, job: Job, attempt: Attempt, exit: AttemptExit, now: float) -> None:
        reason = describe_exit(exit)
        if job.state.terminal:
            # Cancelled (or otherwise ended) while it ran: record how the process went, nothing more.
            self._close_attempt(job, attempt, AttemptState.CANCELLED, now, reason or job.reason, exit)
            return
        if exit.outcome == "succeeded" and exit.result is not None:
            problem = _result_problem(exit.result)
            if problem:  # the worker checks this too: only a worker that lies gets here
                exit = replace(exit, outcome="failed", reason=problem, result=None)
                reason = problem
        if exit.outcome == "cancelled" and attempt.state is AttemptState.ASSIGNED:
            # Handed back before its process started (a stopping worker): not an attempt at all.
            self._requeue_unstarted(job, attempt, now, reason or "handed back before it started")
            return
        if job.spec.is_service:
            self._finish_service(job, attempt, exit, reason, now)
            return
        if exit.outcome == "succeeded":
            self._close_attempt(job, attempt, AttemptState.SUCCEEDED, now, "", exit)
            job.exit_code = exit.exit_code
            job.result = exit.result
            self._succeed(job, now)
            return
        if exit.outcome == "cancelled":
            # The worker gave it back (drain deadline): run it again elsewhere, not a failure.
            self._close_attempt(
                job, attempt, AttemptState.CANCELLED, now, reason or "handed back by its worker", exit
            )
            job.avoid = attempt.worker_id
            self._make_ready(job, now)
            job.reason = f"attempt {attempt.number} was handed back by its worker; requeued"
            return
        self._close_attempt(job, attempt, AttemptState.FAILED, now, reason, exit)
        job.exit_code = exit.exit_code
        job.failures += 1
        self._dirty_jobs.add(job.key)
        policy = job.spec.retries
        if job.failures < policy.attempts:
            wait = policy.backoff(job.failures)
            job.avoid = attempt.worker_id
            self._retry(job, now, wait, f"attempt {attempt.number} failed ({reason})")
        else:
            suffix = f" after {job.failures} attempts" if job.failures > 1 else ""
            self._fail(job, now, f"{reason}{suffix}")

    def _finish_service(self, job: Job, attempt: Attempt, exit: AttemptExit, reason: str, now: float) -> None:
        """A service's process ended without being stopped: restart it, or fail it for good."""
        if job.restart_requested or exit.outcome == "cancelled":
            # Restarted on request, or handed back by a draining worker: start again now, no crash counted.
            requested = job.restart_requested
            job.restart_requested = False
            why = "restart requested" if requested else reason or "handed back by its worker"
            self._close_attempt(job, attempt, AttemptState.CANCELLED, now, why, exit)
            if requested:
                job.restarts += 1
            else:
                job.avoid = attempt.worker_id
            self._make_ready(job, now)
            job.reason = "restarting on request" if requested else "handed back by its worker; rescheduled"
            return
        self._close_attempt(job, attempt, AttemptState.FAILED, now, reason, exit)
        job.exit_code = exit.exit_code
        if (
            exit.outcome == "error"
        ):  # it could not start at all (its port is taken...): restarting cannot help
            self._fail(job, now, reason)
            return
        policy = job.spec.restart
        job.crashes = [t for t in job.crashes if now - t < policy.window] + [now]
        if len(job.crashes) > policy.attempts:
            self._fail(
                job,
                now,
                f"crash loop: {len(job.crashes)} crashes within {policy.window:g}s "
                f"(restart.attempts={policy.attempts}); last: {reason}",
            )
            return
        job.restarts += 1
        wait = policy.backoff(len(job.crashes), self._jitter())
        self._move(job, JobState.RESTARTING)
        job.not_before = now + wait
        job.reason = f"crashed ({reason}); restarting in {wait:.1f}s"
        self._push_timer(job)

    def _retry(self, job: Job, now: float, wait: float, why: str) -> None:
        if wait > 0:
            self._move(job, JobState.PENDING)
            job.not_before = now + wait
            job.reason = f"{why}; retrying in {wait:g}s"
            self._push_timer(job)
        else:
            self._make_ready(job, now)
            job.reason = f"{why}; retrying"

    def _lose(self, job: Job, attempt: Attempt, now: float, reason: str, counted: bool = True) -> None:
        """The attempt's worker is gone (or never got it): retry elsewhere, counted apart from failures."""
        self._close_attempt(job, attempt, AttemptState.LOST, now, f"lost: {reason}")
        if job.state.terminal or job.current is not attempt:
            return
        job.avoid = attempt.worker_id
        if job.spec.is_service:  # a service always comes back, elsewhere and with a new port if need be
            self._make_ready(job, now)
            job.reason = f"rescheduled: {reason}"
            return
        if counted:
            job.lost += 1
        self._dirty_jobs.add(job.key)
        if job.lost > job.spec.retries.max_lost:
            self._fail(
                job,
                now,
                f"lost {job.lost} times (limit retries.max_lost={job.spec.retries.max_lost}); last: {reason}",
            )
        else:
            self._retry(job, now, 0.0, f"attempt {attempt.number} lost ({reason})")

    def _succeed(self, job: Job, now: float) -> None:
        if job.spec.branch and not self._take_branch(job, now):
            return
        gate = job.spec.approval
        if gate.required and job.decision is None:
            self._move(job, JobState.WAITING_APPROVAL)
            job.gate_deadline = now + gate.timeout
            job.reason = gate.message or "waiting for approval"
            heapq.heappush(self._timers, (job.gate_deadline, next(self._timer_seq), job.key))
            return
        self._end_job(job, JobState.SUCCEEDED, now, "")

    def _take_branch(self, job: Job, now: float) -> bool:
        """A branch job's result names the children to follow (a name, a list, or null for none)."""
        try:
            value = parse_result(job.result)
        except BadResult as exc:
            self._end_job(job, JobState.FAILED, now, f"branch: {exc}")
            return False
        names = (
            [value]
            if isinstance(value, str)
            else value
            if isinstance(value, list)
            else []
            if value is None
            else None
        )
        if names is None or not all(isinstance(n, str) for n in names):
            self._end_job(
                job,
                JobState.FAILED,
                now,
                "branch: the result must name children (a string or a list of strings)",
            )
            return False
        unknown = [n for n in names if n not in job.children]
        if unknown:
            self._end_job(
                job,
                JobState.FAILED,
                now,
                f"branch: {', '.join(unknown)} is not a child (children: {', '.join(job.children)})",
            )
            return False
        job.branch_taken = list(names)
        return True

    def _fail(self, job: Job, now: float, reason: str) -> None:
        self._end_job(job, JobState.FAILED, now, reason)

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

    def _maybe_finish_run(self, run: Run, now: float) -> None:
        if run.unfinished > 0 or run.state is not RunState.RUNNING:
            return
        jobs = [
            j for j in run.jobs.values() if not j.spec.allow_failure
        ]  # whose failure was handled do not count
        failed = [j for j in jobs if j.state is JobState.FAILED] or [
            j for j in jobs if j.state in _FAILED_STATES
        ]
        if failed:
            run.state = RunState.FAILED
            first = failed[0]
            run.reason = f"job {first.id} {first.state.value.lower()}: {first.reason}".rstrip(": ")

        elif any(j.state is JobState.CANCELLED for j in jobs):
            run.state = RunState.CANCELLED
            run.reason = next(j.reason for j in jobs if j.state is JobState.CANCELLED)
        else:
            run.state = RunState.SUCCEEDED
            run.reason = ""
        run.ended_at = now
        self._dirty_runs.add(run.id)

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
            worker.attempts.add(attempt.id)
            worker.used_slots += job.spec.slots
            self._attempts[attempt.id] = (job, attempt)
            self._dirty_attempts.add(attempt.id)
            spec = (
                job.spec
                if tuple(job.parents) == job.spec.parents
                else replace(job.spec, parents=tuple(job.parents))
            )
            self._effects.append(
                Assign(
                    worker.id, attempt.id, job.run_id, job.id, attempt.number, spec, self._service_env(job)
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

    def endpoints(self, job: Job) -> list[str]:
        """Where a service instance answers (its current attempt's address), if it runs."""
        current = job.current
        if current is None or current.state.terminal or not current.endpoint:
            return []
        return [current.endpoint]

    def _service_env(self, job: Job) -> dict[str, str]:
        """TITAN_SERVICE_<ID>_ADDR for each service the job depends on (replicas comma-separated)."""
        run = self.runs[job.run_id]
        found: dict[str, list[str]] = {}
        for parent_id in job.spec.parents:
            parent = run.jobs[parent_id]
            if parent.spec.is_service:
                found.setdefault(parent.spec.service_id, []).extend(self.endpoints(parent))
        return {env_name(service): ",".join(addresses) for service, addresses in found.items()}
