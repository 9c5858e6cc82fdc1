"""The states of runs, jobs, attempts and workers, and where a job or an attempt may go from each.

The transition tables are the contract of ClusterState (core/cluster.py): its `_move` and
`_move_attempt` are the only places a state changes, and they hold every change to these tables.
"""

from __future__ import annotations

from enum import Enum


class RunState(str, Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class JobState(str, Enum):
    PENDING = "PENDING"  # waiting for parents, a delay or a retry backoff
    READY = "READY"  # queued for a worker
    ASSIGNED = "ASSIGNED"  # sent to a worker, not yet started
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    SKIPPED = "SKIPPED"
    # Services only:
    WAITING_APPROVAL = "WAITING_APPROVAL"  # succeeded; its gate waits for a human decision
    STARTING = "STARTING"  # running, its health check has not passed yet
    HEALTHY = "HEALTHY"
    RESTARTING = "RESTARTING"  # crashed; waiting out its restart backoff
    STOPPED = "STOPPED"  # stopped on purpose (stop, or replaced by a redeploy); never restarts

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_JOB_STATES


_TERMINAL_JOB_STATES = frozenset(
    {
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.UPSTREAM_FAILED,
        JobState.SKIPPED,
        JobState.STOPPED,
    }
)


def _job_transitions() -> dict[JobState, frozenset[JobState]]:
    J = JobState
    ends = _TERMINAL_JOB_STATES
    # An attempt is out: it starts, ends in success (perhaps behind a gate), fails into a retry
    # (PENDING for its backoff, or READY at once), or crashes as a service (RESTARTING).
    out = {J.RUNNING, J.PENDING, J.READY, J.RESTARTING, J.WAITING_APPROVAL}
    return {
        J.PENDING: frozenset({J.PENDING, J.READY, J.RUNNING} | ends),  # RUNNING: a map's parent spreads
        J.READY: frozenset({J.READY, J.ASSIGNED} | ends),  # READY again: queued anew (a worker left)
        J.ASSIGNED: frozenset(out | {J.STARTING} | ends),
        J.RUNNING: frozenset(out | ends),
        J.STARTING: frozenset(out | {J.STARTING, J.HEALTHY} | ends),
        J.HEALTHY: frozenset(out | {J.HEALTHY} | ends),
        J.RESTARTING: frozenset({J.READY} | ends),
        J.WAITING_APPROVAL: frozenset(ends),
        **{end: frozenset() for end in ends},  # an end is for good
    }


#: Where a job may go from each state: the one function that changes a job's state
#: (ClusterState._move) holds every change to this table.
JOB_TRANSITIONS = _job_transitions()


def _attempt_transitions() -> dict[AttemptState, frozenset[AttemptState]]:
    A = AttemptState
    ends = frozenset(a for a in A if a.terminal)
    return {
        A.ASSIGNED: frozenset({A.RUNNING} | ends),  # it may end without a start report (cancelled first)
        A.RUNNING: frozenset({A.RUNNING} | ends),  # RUNNING again: a start reported twice (a reconnect)
        **{end: frozenset() for end in ends},
    }


class IllegalTransition(RuntimeError):
    """A change of a job's or an attempt's state its table does not have: a bug in the core."""


class AttemptState(str, Enum):
    ASSIGNED = "ASSIGNED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    LOST = "LOST"  # its worker died or became unreachable

    @property
    def terminal(self) -> bool:
        return self not in (AttemptState.ASSIGNED, AttemptState.RUNNING)


#: Where an attempt may go from each state (ClusterState._move_attempt holds every change to it).
ATTEMPT_TRANSITIONS = _attempt_transitions()


class WorkerState(str, Enum):
    ALIVE = "ALIVE"
    DRAINING = "DRAINING"
    # Known from the store after a master restart, not yet reconnected: its attempts are kept
    # until its lease runs out.
    UNKNOWN = "UNKNOWN"
    DEAD = "DEAD"  # crashed, unreachable or silent past its lease
    LEFT = "LEFT"  # exited on purpose (drained or stopped)

    @property
    def gone(self) -> bool:
        return self in (WorkerState.DEAD, WorkerState.LEFT)
