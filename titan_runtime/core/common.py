"""What ClusterState (core/cluster.py) and its parts share: its settings, its refusals, and pure
helpers on results, replicas, ports and names."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from titan_runtime.core.effects import (
    AttemptExit,
)
from titan_runtime.core.limits import DEFAULT_LIMITS, Limits
from titan_runtime.core.model import (
    MAX_RESULT_BYTES,
    InvalidSpec,
    Job,
    JobSpec,
    JobState,
    Run,
)
from titan_runtime.core.names import MAX_OPEN_FOR

if TYPE_CHECKING:
    from titan_runtime.core.cluster import ClusterState

    #: What each part of ClusterState subclasses: to a type checker the whole ClusterState (its
    #: parts use each other's state and methods), at run time nothing.
    ClusterPart = ClusterState
else:
    ClusterPart = object


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


def result_problem(text: str) -> str:
    if len(text) > MAX_RESULT_BYTES // 4 and len(text.encode()) > MAX_RESULT_BYTES:
        return f"the job's result is over the {MAX_RESULT_BYTES // (1024 * 1024)} MB limit"
    try:
        parse_result(text)
    except BadResult as exc:
        return f"the worker reported a bad result: {exc}"
    return ""


def describe_error(exc: BaseException) -> str:
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


FAILED_STATES = (JobState.FAILED, JobState.UPSTREAM_FAILED)


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


def resolve_ref(
    ref: str, find_run: Callable[[str], Run | None], latest_holder: Callable[[str], Run | None]
) -> Job:
    """A job by "RUN/JOB", by the id of a run of one job, or by a bare job id (the latest run that
    holds one), wherever runs are found (the core's memory; the master adds its store's history)."""
    run_id, slash, job_id = ref.partition("/")
    run = find_run(run_id)
    if slash:
        if run is None:
            raise NotFound(f"no run {run_id!r}: list runs with `titan-runtime runs`")
        job = run.jobs.get(job_id)
        if job is None:
            raise NotFound(f"run {run_id} has no job {job_id!r}; its jobs: {', '.join(list(run.jobs)[:20])}")
        return job
    if run is not None:
        if len(run.jobs) == 1:
            return next(iter(run.jobs.values()))
        raise NotFound(f"{ref} is a run of {len(run.jobs)} jobs; address one of them as {ref}/JOB")
    holder = latest_holder(ref)
    if holder is not None:
        return holder.jobs[ref]
    raise NotFound(f"no job {ref!r}: use the id that submit printed, or RUN/JOB for a job in a run")


def check_open_for(open_for: float) -> None:
    """How long a run may be held open past its jobs' end (SubmitRun's and AddJobs' open_for)."""
    if not 0 <= open_for <= MAX_OPEN_FOR:  # False for NaN too
        raise InvalidSpec(f"open_for must be between 0 and {MAX_OPEN_FOR:g} seconds, not {open_for!r}")
