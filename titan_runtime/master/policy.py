"""Who may call which RPC: one declared policy per method, for every kind of credential.

The auth interceptor applies this table before any handler runs. A method missing from it is
refused to everyone but the cluster token (closed by default), and a test enumerates the proto's
methods and fails for one without a policy, then checks every cell against a live master
(tests/integration/test_policy.py). `OWN_RUN` admits the call; its handler then confines it to the
caller's own run (a job's credential changes its own run only).

Kinds of caller: the cluster token and admin tokens (everything), a job's credential (scoped to
its run, expiring with it), a join token (what one autoscaled worker needs), and the named tokens of
`titan-runtime token create`: read (every call that changes nothing), submit (read, plus what a
job may do, on the runs it submitted), worker (what a join token may). The table declares a job's and
a join token's column; the named roles' columns follow from them and `mutates` (`Policy.access`).
A missing, wrong or expired credential never reaches this table: it is UNAUTHENTICATED.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Access(str, Enum):
    ALLOW = "allow"
    OWN_RUN = "own run"  # admitted; the handler refuses what touches another run
    READS = "reads only"  # admitted; a request that would change something is refused
    DENY = "deny"


class Kind(str, Enum):
    CLUSTER = "cluster"  # the cluster token
    ADMIN = "admin"  # a named admin token: what the cluster token may
    SUBMIT = "submit"
    READ = "read"
    WORKER = "worker"
    JOB = "job"
    JOIN = "join"


#: The roles `titan-runtime token create --role` gives.
ROLES = (Kind.ADMIN, Kind.SUBMIT, Kind.READ, Kind.WORKER)


@dataclass(frozen=True)
class Policy:
    job: Access
    join: Access = Access.DENY
    why: str = ""  # why a job's credential is refused, said after "a job credential cannot call X:"
    mutates: bool = False  # it changes something: the audit log records it
    reads_too: bool = False  # some of its requests change nothing (a KV get): read tokens may send those

    def access(self, kind: Kind) -> Access:
        if kind in (Kind.CLUSTER, Kind.ADMIN):
            return Access.ALLOW
        if kind is Kind.READ:
            if not self.mutates:
                return Access.ALLOW
            return Access.READS if self.reads_too else Access.DENY
        if kind is Kind.SUBMIT:  # a job's rights, on the runs it submitted; and every read
            return self.job if self.mutates else Access.ALLOW
        return self.job if kind is Kind.JOB else self.join  # a worker token is a lasting join token


ALLOW, OWN_RUN, DENY = Access.ALLOW, Access.OWN_RUN, Access.DENY
_ADMIN = "that takes the cluster token or an admin token"
_NO_RUN = f"saved DAGs and schedules belong to no run; {_ADMIN}"
_WORKERS = f"workers are the cluster's; {_ADMIN}"
_CLUSTERS = "{} the cluster's; " + _ADMIN

_TITAN: dict[str, Policy] = {
    # Runs and jobs. Submitting is open to jobs (agents, Dagster Pipes steps submit runs).
    "SubmitRun": Policy(job=ALLOW, mutates=True),
    "GetJob": Policy(job=ALLOW),
    "GetRun": Policy(job=ALLOW),
    "ListRuns": Policy(job=ALLOW),
    "WaitJob": Policy(job=ALLOW),
    "WaitRun": Policy(job=ALLOW),
    "Cancel": Policy(job=OWN_RUN, mutates=True),
    # Retention: deleting history is the cluster's, never a job's (it could erase another run's record).
    "DeleteRun": Policy(job=DENY, why=_CLUSTERS.format("history is"), mutates=True),
    "CollectGarbage": Policy(job=DENY, why=_CLUSTERS.format("history is"), mutates=True),
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
    "Kv": Policy(job=ALLOW, mutates=True, reads_too=True),
    "ListKv": Policy(job=ALLOW),
    "PutArtifact": Policy(job=ALLOW, mutates=True),
    "GetArtifact": Policy(job=ALLOW, join=ALLOW),  # a worker fetches its jobs' scripts and projects
    "HasArtifact": Policy(job=ALLOW),
    "NameArtifact": Policy(
        job=ALLOW, mutates=True
    ),  # a job's names go to its own run's namespace, whatever it asks
    "ResolveArtifact": Policy(job=ALLOW),
    "ListArtifacts": Policy(job=ALLOW),  # names, hashes and sizes: what ResolveArtifact gives one by one
    # Autoscaler.
    "GetAutoscalerStatus": Policy(job=ALLOW),
    "ListAutoscalerEvents": Policy(job=ALLOW),
    # The audit log: who did what, the cluster's to read.
    "ListAudit": Policy(job=DENY, why=_CLUSTERS.format("the audit log is")),
    # Named tokens: their records (never the tokens) are readable; making and revoking them is admin's.
    "CreateToken": Policy(job=DENY, why=_CLUSTERS.format("tokens are"), mutates=True),
    "ListTokens": Policy(job=DENY, why=_CLUSTERS.format("tokens are")),
    "WhoAmI": Policy(job=ALLOW),  # a caller's own kind: what tools an MCP server offers it
    # What changed, as it is committed: reads only (a dashboard's one stream per kind of data).
    "Watch": Policy(job=ALLOW),
    "RevokeToken": Policy(job=DENY, why=_CLUSTERS.format("tokens are"), mutates=True),
    # Secrets: their names and values are the cluster's.
    "SetSecret": Policy(job=DENY, why=_CLUSTERS.format("secrets are"), mutates=True),
    "ListSecrets": Policy(job=DENY, why=_CLUSTERS.format("secrets are")),
    "DeleteSecret": Policy(job=DENY, why=_CLUSTERS.format("secrets are"), mutates=True),
}

POLICY: dict[str, Policy] = {
    **{f"/titan.v1.Titan/{name}": policy for name, policy in _TITAN.items()},
    "/titan.v1.WorkerLink/Connect": Policy(job=DENY, join=ALLOW, why="it is the worker link", mutates=True),
}

#: What a caller gets for a method that is not in the table.
UNDECLARED = Policy(job=DENY, why="this method has no declared policy")
_KV_READS = ("get", "smembers")


def is_mutating(method: str, request: object) -> bool:
    """Whether a call changes something (a KV call by its operation)."""
    policy = POLICY.get(method, UNDECLARED)
    if not policy.mutates:
        return False
    return not (policy.reads_too and getattr(request, "op", "") in _KV_READS)


def refusal(method: str, kind: Kind) -> str:
    """Why `kind` may not call `method`, or "" when it may (perhaps only on its own run)."""
    policy = POLICY.get(method, UNDECLARED)
    if policy.access(kind) is not DENY:
        return ""
    name = method.rsplit("/", 1)[-1]
    if kind is Kind.JOIN:
        return "a join token only admits a worker to its link"
    if kind is Kind.WORKER:
        return f"a worker token only admits a worker to its link, not {name}"
    if kind is Kind.READ:
        return f"a read token cannot call {name}: it changes something, and a read token changes nothing"
    if kind is Kind.SUBMIT:
        return f"a submit token cannot call {name}: {policy.why}"
    return f"a job credential cannot call {name}: {policy.why}"
