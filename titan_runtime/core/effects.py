"""What the cluster state machine asks the outside world to do, and what it is told.

Inputs arrive as plain values (a worker's hello, an attempt's exit); outputs are effects the
master carries out *after* the state they depend on has been committed to the store: written,
and for all but the assignments `before_sync` lets through, fsynced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from titan_runtime.core.model import JobSpec

# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class AttemptExit:
    """How an attempt ended, as its worker saw it."""

    outcome: str  # succeeded | failed | timeout | cancelled | error
    exit_code: int | None = None
    signal: str = ""
    reason: str = ""
    result: str | None = None  # JSON text
    log_size: int = 0
    ended_at: float = 0.0


@dataclass(frozen=True)
class HeldAttempt:
    """An attempt a (re)connecting worker still holds: running, or finished and not yet acknowledged."""

    attempt_id: str
    pid: int = 0
    started_at: float = 0.0
    exit: AttemptExit | None = None
    log_size: int = 0
    host: str = ""  # services: where it is reachable, its leased ports, whether it passed its check
    ports: dict[str, int] = field(default_factory=dict)
    healthy: bool = False


@dataclass(frozen=True)
class WorkerHello:
    worker_id: str
    name: str
    host: str = ""
    pid: int = 0
    tags: frozenset[str] = frozenset()
    slots: int = 1
    cpu_count: int = 0
    memory_bytes: int = 0
    gpus: tuple[str, ...] = ()
    version: str = ""
    held: tuple[HeldAttempt, ...] = ()
    draining: bool = False
    pool: str = ""  # set when a provider started it for an autoscaled pool
    provider: str = ""
    launch_id: str = ""
    memory_enforcement: str = ""


# ---------------------------------------------------------------- outputs


@dataclass(frozen=True)
class Assign:
    worker_id: str
    attempt_id: str
    run_id: str
    job_id: str
    number: int
    spec: JobSpec
    env: dict[str, str] = field(default_factory=dict)  # what the master adds: TITAN_SERVICE_<ID>_ADDR
    gpus: tuple[str, ...] = ()  # the devices it was given
    #: A function task's parents' results (JSON text) by job id: the futures it was passed, resolved
    #: on the cluster (the caller never holds the values).
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CancelAttempt:
    worker_id: str
    attempt_id: str
    reason: str


@dataclass(frozen=True)
class AckFinished:
    worker_id: str
    attempt_id: str


@dataclass(frozen=True)
class DisconnectWorker:
    worker_id: str
    reason: str


@dataclass(frozen=True)
class DrainWorker:
    """Tell a worker to take no more work, finish what it runs within `deadline` seconds, and exit."""

    worker_id: str
    deadline: float
    reason: str


@dataclass(frozen=True)
class Note:
    """Something an operator should be able to find in the master's log."""

    message: str


Effect = Assign | CancelAttempt | AckFinished | DisconnectWorker | DrainWorker | Note


@dataclass(frozen=True)
class Welcome:
    """The answer to a worker's hello."""

    superseded: tuple[str, ...] = ()  # held attempts the worker must kill and forget
    log_offsets: dict[str, int] = field(default_factory=dict)  # bytes of each adopted log already held


class Rows(Sequence[dict[str, Any]]):
    """Rows made as they are read, one at a time: a commit of 100,000 new jobs does not hold all
    their rows (and specs as dicts) at once. Read them once, before the next event."""

    def __init__(self, items: Sequence[Any], make: Callable[[Any], dict[str, Any]]) -> None:
        self._items = items
        self._make = make

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(self._make, self._items)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._make(item) for item in self._items[index]]
        return self._make(self._items[index])


@dataclass
class Changes:
    """Snapshot rows to persist in one transaction, and what they touched."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    new_jobs: Sequence[dict[str, Any]] = field(default_factory=list)  # rows with a "spec": written once
    jobs: list[dict[str, Any]] = field(default_factory=list)  # state updates of existing jobs
    attempts: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)
    job_keys: set[tuple[str, str]] = field(default_factory=set)
    run_ids: set[str] = field(default_factory=set)
    ended_attempts: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.runs or self.new_jobs or self.jobs or self.attempts or self.workers)


def before_sync(effects: list[Effect], changes: Changes) -> tuple[list[Effect], list[Effect]]:
    """Split a committed batch's effects into those carried out once it is written (it survives a
    crash of the master's process) and those that wait for its fsync (it survives a power cut too).

    Only assignments go early, which takes the fsync off the path from a submission to its job
    running, and from a freed slot to the next job waiting for one. Lost to a power cut, an early
    assignment names an attempt the restarted master never heard of: its worker reports it on
    reconnecting and is told to stop it, and whoever caused it was never answered (at-least-once).

    Everything else waits, because being told is what must not be undone: a client's answer or
    wake-up, a worker's acknowledgement (after which it forgets the result it holds), a cancel.
    So does an assignment that may rest on an attempt that ended in this batch: a retry or
    restart, or a job one of whose parents changed state here (a child must not run on its parent's
    result while a power cut could still take that result back).
    """
    early: list[Effect] = []
    late: list[Effect] = []
    for effect in effects:
        if isinstance(effect, Assign) and (not changes.ended_attempts or _independent(effect, changes)):
            early.append(effect)
        else:
            late.append(effect)
    return early, late


def _independent(assign: Assign, changes: Changes) -> bool:
    """A first attempt none of whose parents changed in this batch: nothing that ended here made it ready."""
    return assign.number == 1 and not any((assign.run_id, p) in changes.job_keys for p in assign.spec.parents)
