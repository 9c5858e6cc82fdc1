"""The records the control plane reasons about: runs, jobs, attempts and workers.

Plain dataclasses, no I/O. The master keeps one instance of each in memory (the source of truth
for decisions) and the store persists snapshots of them; `to_row`/`from_row` define that
snapshot so every backend stores exactly the same thing.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from titan_runtime.core.resources import Need
from titan_runtime.core.spec import (  # noqa: F401 - the spec's names are this module's public names too
    GENERAL,
    ID_PATTERN,
    MAX_RESULT_BYTES,
    MAX_SECRETS_PER_JOB,
    RUN_ID_PATTERN,
    SECRET_ENV_PATTERN,
    SECRET_NAME_PATTERN,
    TAG_PATTERN,
    TRIGGER_RULES,
    ApprovalGate,
    HealthCheck,
    InvalidSpec,
    JobSpec,
    RestartPolicy,
    RetryPolicy,
)
from titan_runtime.core.states import (  # noqa: F401 - the states are this module's public names too
    ATTEMPT_TRANSITIONS,
    JOB_TRANSITIONS,
    AttemptState,
    IllegalTransition,
    JobState,
    RunState,
    WorkerState,
)


@dataclass
class Attempt:
    id: str
    run_id: str
    job_id: str
    number: int
    worker_id: str
    state: AttemptState = AttemptState.ASSIGNED
    assigned_at: float = 0.0
    started_at: float = 0.0
    ended_at: float = 0.0
    exit_code: int | None = None
    signal: str = ""
    reason: str = ""
    pid: int = 0
    log_size: int = 0
    host: str = ""  # services: where the worker says it can be reached
    ports: dict[str, int] = field(default_factory=dict)  # services: leased ports by name
    healthy: bool = False  # services: its health check passed
    gpus: tuple[str, ...] = ()  # the worker's devices it was given (resources.gpus)
    #: Ended before its process started and the job went on (handed back by a stopping worker,
    #: never received): kept to reject its late reports, but not one of the job's attempts.
    void: bool = False

    @property
    def endpoint(self) -> str:
        if not self.ports:
            return ""
        port = next(iter(self.ports.values()))
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{port}"

    def to_row(self) -> dict[str, Any]:
        row = dict(self.__dict__)  # every field (a plain dataclass): written at every transition
        row["state"] = self.state.value
        row["gpus"] = list(self.gpus)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Attempt:
        data = dict(row)
        data["state"] = AttemptState(data["state"])
        if "gpus" in data:
            data["gpus"] = tuple(data["gpus"])
        return cls(**data)


@dataclass(slots=True)  # a big run holds 100,000 of them: a __dict__ each would be 2 KB more
class Job:
    run_id: str
    spec: JobSpec
    state: JobState = JobState.PENDING
    reason: str = ""
    created_at: float = 0.0
    ready_at: float = 0.0
    started_at: float = 0.0
    ended_at: float = 0.0
    not_before: float = 0.0  # earliest time it may become READY (delay, retry backoff)
    attempts: list[Attempt] = field(default_factory=list)
    failures: int = 0  # attempts that failed on their own (counted against retries.attempts)
    lost: int = 0  # attempts lost with their worker (counted against retries.max_lost)
    exit_code: int | None = None
    worker_id: str = ""
    result: str | None = None  # JSON text of the committed result
    # Dynamic DAGs:
    parents: list[str] = field(default_factory=list)  # its spec's parents, until a feedback loop rewires them
    branch_taken: list[str] | None = None  # a branch job's result: the children it follows
    decision: dict[str, Any] | None = None  # its approval gate's: {decision, by, at, comment}
    gate_deadline: float = 0.0  # when its open approval gate expires
    # Services:
    healthy_once: bool = False  # it has passed a health check: its dependents have been released
    restarts: int = 0  # restarts after crashes, for the record
    crashes: tuple[float, ...] = ()  # recent crash times, for the crash-loop window (services only)
    # Derived while loaded; not persisted:
    children: list[str] = field(default_factory=list)
    waiting_on: int = 0  # parents not yet delivered (SUCCEEDED, or HEALTHY for a service)
    restart_requested: bool = False
    released: bool = False  # its children were told it resolved (ended, or a service became healthy)
    mapped: list[str] = field(default_factory=list)  # a map_over job's instances, in item order
    voided: tuple[str, ...] = ()  # ids of its void attempts (see Attempt.void); rare: no list per job

    def __post_init__(self) -> None:
        if not self.parents and self.spec.parents:
            self.parents = list(self.spec.parents)

    order: int = 0  # arrival rank: ties in priority go to the earlier job
    avoid: str = ""  # worker to avoid on the next attempt (the one that lost or failed it)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def key(self) -> tuple[str, str]:
        return (self.run_id, self.spec.id)

    @property
    def ref(self) -> str:
        return f"{self.run_id}/{self.spec.id}"

    @property
    def current(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def delivered(self) -> bool:
        """What its children wait for: success, or for a service its first passed health check."""
        return self.state is JobState.SUCCEEDED or (self.spec.is_service and self.healthy_once)

    def to_row(self) -> dict[str, Any]:
        """The job's mutable state; its spec is persisted once, on creation (see Changes.new_jobs).

        Fields at their defaults are left out (`from_row` restores them), and its parents when they
        are its spec's: most of a row is defaults, and a failure that settles 100,000 jobs writes
        100,000 rows."""
        row: dict[str, Any] = {"run_id": self.run_id, "job_id": self.spec.id, "state": self.state.value}
        for (name, default), value in zip(_JOB_ROW_DEFAULTS, _read_row(self), strict=True):
            if value != default:
                row[name] = list(value) if name == "crashes" else value  # JSON: a list
        if tuple(self.parents) != self.spec.parents:
            row["parents"] = list(self.parents)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        spec = JobSpec.from_dict(row["spec"])
        job = cls(
            run_id=row["run_id"],
            spec=spec,
            state=_JOB_STATES[row["state"]],
            parents=list(row.get("parents") or spec.parents),
        )
        for name, default in _JOB_ROW_DEFAULTS:
            value = row.get(name, default)
            if value != default:
                setattr(job, name, tuple(value) if name == "crashes" else value)
        return job


@dataclass
class Run:
    id: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    agent_run_id: str = ""
    state: RunState = RunState.RUNNING
    reason: str = ""
    created_at: float = 0.0
    ended_at: float = 0.0
    seq: int = 0  # submission order, for listings and bare job-id lookups
    # Who submitted it: "" the cluster token, "run:ID" a job of run ID. Only its submitter may
    # submit it again and be given it (idempotency); anyone else would adopt a run they did not make.
    submitted_by: str = ""
    #: Its jobs by state once it has ended: persisted, so that a finished run is listed without
    #: reading its jobs.
    counts: dict[str, int] = field(default_factory=dict)
    #: It does not end before this time, though all its jobs have (0: no hold): a client's session
    #: of function tasks stays one run while it adds to it (open_for of SubmitRun and AddJobs).
    open_until: float = 0.0
    # Derived while loaded:
    jobs: dict[str, Job] = field(default_factory=dict)
    unfinished: int = 0
    services: int = 0  # how many of its jobs are services

    @property
    def settled(self) -> bool:
        """Every batch job ended and every service HEALTHY (or ended): only services keep it RUNNING."""
        if self.unfinished == 0:
            return True
        if self.unfinished > self.services:  # some batch job has not ended: no need to look
            return False
        return all(
            job.state.terminal or (job.spec.is_service and job.state is JobState.HEALTHY)
            for job in self.jobs.values()
        )

    def to_row(self) -> dict[str, Any]:

        return {
            "id": self.id,
            "name": self.name,
            "labels": dict(self.labels),
            "agent_run_id": self.agent_run_id,
            "state": self.state.value,
            "reason": self.reason,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "seq": self.seq,
            **({"submitted_by": self.submitted_by} if self.submitted_by else {}),
            **({"counts": dict(self.counts)} if self.counts else {}),
            **({"open_until": self.open_until} if self.open_until else {}),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Run:
        data = dict(row)
        data["state"] = RunState(data["state"])
        return cls(**data)


@dataclass
class Worker:
    id: str
    name: str
    host: str = ""
    pid: int = 0
    tags: frozenset[str] = frozenset()
    slots: int = 1
    # What it offers beyond slots (detected, or set by its --cpus, --memory and --gpus).
    cpu_count: int = 0
    memory_bytes: int = 0
    gpus: tuple[str, ...] = ()
    memory_enforcement: str = ""
    version: str = ""
    state: WorkerState = WorkerState.ALIVE
    registered_at: float = 0.0
    last_heartbeat: float = 0.0
    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    # Autoscaling: the pool a provider started it for, that provider, and the launch it answers.
    pool: str = ""
    provider: str = ""
    launch_id: str = ""
    # Derived: attempts assigned to this worker and not yet finished, and what they hold.
    attempts: set[str] = field(default_factory=set)
    used_slots: int = 0
    used_millicpus: int = 0
    used_memory_mb: int = 0
    gpu_holders: dict[str, str] = field(default_factory=dict)  # device -> the attempt given it

    @property
    def free_slots(self) -> int:
        return self.slots - self.used_slots

    def fits(self, need: Need) -> bool:
        """Whether a job needing `need` (beyond its slots) fits beside what runs here now."""
        return (
            need.millicpus <= self.cpu_count * 1000 - self.used_millicpus
            and need.memory_mb <= (self.memory_bytes >> 20) - self.used_memory_mb
            and need.gpus <= len(self.gpus) - len(self.gpu_holders)
        )

    def could_ever_fit(self, need: Need) -> bool:
        """Whether it could run such a job at all, once idle."""
        return (
            need.millicpus <= self.cpu_count * 1000
            and need.memory_mb <= self.memory_bytes >> 20
            and need.gpus <= len(self.gpus)
        )

    def hold(self, attempt: Attempt, slots: int, need: Need) -> None:
        """Account an attempt placed on (or found running on) this worker. Devices it was already
        given (restored or adopted) are kept; otherwise the first free ones are given."""
        self.attempts.add(attempt.id)
        self.used_slots += slots
        if not need:
            return
        self.used_millicpus += need.millicpus
        self.used_memory_mb += need.memory_mb
        if need.gpus and not attempt.gpus:
            attempt.gpus = tuple([gpu for gpu in self.gpus if gpu not in self.gpu_holders][: need.gpus])
        for gpu in attempt.gpus:
            self.gpu_holders[gpu] = attempt.id

    def release(self, attempt: Attempt, slots: int, need: Need) -> bool:
        """Give back what `hold` took; False when the attempt held nothing here."""
        if attempt.id not in self.attempts:
            return False
        self.attempts.discard(attempt.id)
        self.used_slots -= slots
        if need:
            self.used_millicpus -= need.millicpus
            self.used_memory_mb -= need.memory_mb
            for gpu in attempt.gpus:
                if self.gpu_holders.get(gpu) == attempt.id:
                    del self.gpu_holders[gpu]
        return True

    @property
    def schedulable(self) -> bool:
        return self.state is WorkerState.ALIVE

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "host": self.host,
            "pid": self.pid,
            "tags": sorted(self.tags),
            "slots": self.slots,
            "cpu_count": self.cpu_count,
            "memory_bytes": self.memory_bytes,
            "gpus": list(self.gpus),
            "memory_enforcement": self.memory_enforcement,
            "version": self.version,
            "state": self.state.value,
            "registered_at": self.registered_at,
            "last_heartbeat": self.last_heartbeat,
            "pool": self.pool,
            "provider": self.provider,
            "launch_id": self.launch_id,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Worker:
        data = dict(row)
        data["state"] = WorkerState(data["state"])
        data["tags"] = frozenset(data["tags"])
        data["gpus"] = tuple(data["gpus"])
        return cls(**data)


#: A job row's fields and their defaults (what to_row leaves out).
_JOB_ROW_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("reason", ""),
    ("created_at", 0.0),
    ("ready_at", 0.0),
    ("started_at", 0.0),
    ("ended_at", 0.0),
    ("not_before", 0.0),
    ("failures", 0),
    ("lost", 0),
    ("exit_code", None),
    ("worker_id", ""),
    ("result", None),
    ("healthy_once", False),
    ("restarts", 0),
    ("crashes", ()),
    ("branch_taken", None),
    ("decision", None),
    ("gate_deadline", 0.0),
)
_JOB_STATES = {state.value: state for state in JobState}
_read_row = operator.attrgetter(
    *(name for name, _ in _JOB_ROW_DEFAULTS)
)  # in one call: a row per job written
