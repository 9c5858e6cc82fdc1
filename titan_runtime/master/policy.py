"""Who may call which RPC: one declared policy per method, for every kind of credential.

The auth interceptor applies this table before any handler runs. A method missing from it is
refused to everyone but the cluster token (closed by default), and a test enumerates the proto's
methods and fails for one without a policy, then checks every cell against a live master
(tests/integration/test_policy.py). `OWN_RUN` admits the call; its handler then confines it to the
caller's own run (a job's credential changes its own run only).

Kinds of caller: the cluster token (everything), a job's credential (scoped to its run, expiring
with it), a join token (what one autoscaled worker needs). A missing, wrong or expired credential
never reaches this table: it is UNAUTHENTICATED.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Access(str, Enum):
    ALLOW = "allow"
    OWN_RUN = "own run"  # admitted; the handler refuses what touches another run
    DENY = "deny"


class Kind(str, Enum):
    CLUSTER = "cluster"
    JOB = "job"
    JOIN = "join"


@dataclass(frozen=True)
class Policy:
    job: Access
    join: Access = Access.DENY
    why: str = ""  # why a job's credential is refused, said after "a job credential cannot call X:"
    mutates: bool = False  # it changes something: the audit log records it

    def access(self, kind: Kind) -> Access:
        if kind is Kind.CLUSTER:
            return Access.ALLOW
        return self.job if kind is Kind.JOB else self.join


ALLOW, OWN_RUN, DENY = Access.ALLOW, Access.OWN_RUN, Access.DENY
_NO_RUN = "saved DAGs and schedules belong to no run; that takes the cluster token"
_WORKERS = "workers are the cluster's; that takes the cluster token"

_TITAN: dict[str, Policy] = {
    # Runs and jobs. Submitting is open to jobs (agents, Dagster Pipes steps submit runs).
    "SubmitRun": Policy(job=ALLOW, mutates=True),
    "GetJob": Policy(job=ALLOW),
    "GetRun": Policy(job=ALLOW),
    "ListRuns": Policy(job=ALLOW),
    "WaitJob": Policy(job=ALLOW),
    "WaitRun": Policy(job=ALLOW),
    "Cancel": Policy(job=OWN_RUN, mutates=True),
    "ReadLogs": Policy(job=ALLOW),
    "GetResult": Policy(job=ALLOW),
    # Workers.
    "ListWorkers": Policy(job=ALLOW),
    "DrainWorker": Policy(job=DENY, why=_WORKERS, mutates=True),
    # Dynamic DAGs and approvals.
    "AddJobs": Policy(job=OWN_RUN, mutates=True),
    "AddIteration": Policy(job=OWN_RUN, mutates=True),
    "DecideGate": Policy(job=OWN_RUN, mutates=True),
    "ListApprovals": Policy(job=ALLOW),
    "ListAgentRuns": Policy(job=ALLOW),
    # Saved DAGs and schedules outlive every run: a job could replace what a schedule submits.
    "SaveDag": Policy(job=DENY, why=_NO_RUN, mutates=True),
    "ListSavedDags": Policy(job=ALLOW),
    "DeleteSavedDag": Policy(job=DENY, why=_NO_RUN, mutates=True),
    "SubmitSavedDag": Policy(job=ALLOW, mutates=True),
    "AddSchedule": Policy(job=DENY, why=_NO_RUN, mutates=True),
    "ListSchedules": Policy(job=ALLOW),
    "DeleteSchedule": Policy(job=DENY, why=_NO_RUN, mutates=True),
    # Services.
    "ListServices": Policy(job=ALLOW),
    "StopService": Policy(job=OWN_RUN, mutates=True),
    "RestartService": Policy(job=OWN_RUN, mutates=True),
    # KV store and artifacts: a job's writes are recorded as its run's (limits, namespaces).
    "Kv": Policy(job=ALLOW, mutates=True),
    "PutArtifact": Policy(job=ALLOW, mutates=True),
    "GetArtifact": Policy(job=ALLOW, join=ALLOW),  # a worker fetches its jobs' scripts and projects
    "HasArtifact": Policy(job=ALLOW),
    "NameArtifact": Policy(
        job=ALLOW, mutates=True
    ),  # a job's names go to its own run's namespace, whatever it asks
    "ResolveArtifact": Policy(job=ALLOW),
    # Autoscaler.
    "GetAutoscalerStatus": Policy(job=ALLOW),
    "ListAutoscalerEvents": Policy(job=ALLOW),
    # The audit log: who did what, the cluster's to read.
    "ListAudit": Policy(job=DENY, why="the audit log is the cluster's; that takes the cluster token"),
    "SetSecret": Policy(
        job=DENY, why="secrets are the cluster's; that takes the cluster token", mutates=True
    ),
    "ListSecrets": Policy(job=DENY, why="secrets are the cluster's; that takes the cluster token"),
    "DeleteSecret": Policy(
        job=DENY, why="secrets are the cluster's; that takes the cluster token", mutates=True
    ),
}

POLICY: dict[str, Policy] = {
    **{f"/titan.v1.Titan/{name}": policy for name, policy in _TITAN.items()},
    "/titan.v1.WorkerLink/Connect": Policy(job=DENY, join=ALLOW, why="it is the worker link"),
}

#: What a caller gets for a method that is not in the table.
UNDECLARED = Policy(job=DENY, why="this method has no declared policy")
_KV_READS = ("get", "smembers")


def is_mutating(method: str, request: object) -> bool:
    """Whether a call changes something (a KV call by its operation)."""
    if not POLICY.get(method, UNDECLARED).mutates:
        return False
    return not (method.endswith("/Kv") and getattr(request, "op", "") in _KV_READS)


def refusal(method: str, kind: Kind) -> str:
    """Why `kind` may not call `method`, or "" when it may (perhaps only on its own run)."""
    policy = POLICY.get(method, UNDECLARED)
    if policy.access(kind) is not DENY:
        return ""
    if kind is Kind.JOIN:
        return "a join token only admits a worker to its link"
    return f"a job credential cannot call {method.rsplit('/', 1)[-1]}: {policy.why}"
