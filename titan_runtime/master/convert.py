"""Translation between the wire (protobuf) and the core's records. Nothing else lives here."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from titan_runtime.core.cluster import ClusterState
from titan_runtime.core.effects import AttemptExit, HeldAttempt, WorkerHello
from titan_runtime.core.model import (
    GENERAL,
    ApprovalGate,
    Attempt,
    HealthCheck,
    Job,
    JobSpec,
    RestartPolicy,
    RetryPolicy,
    Run,
    Worker,
)
from titan_runtime.core.spec import SPEC_DEFAULTS
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.wire import from_message, reader, to_message

P = TypeVar("P")
#: The specs' own defaults (the dataclass field defaults, one instance each).
_NO_RETRIES, _NO_HEALTH, _NO_RESTART, _NO_GATE = (
    SPEC_DEFAULTS["retries"], SPEC_DEFAULTS["health"], SPEC_DEFAULTS["restart"], SPEC_DEFAULTS["approval"],
)  # fmt: skip


def _policy(msg: Any, kind: type[P]) -> P:
    """A policy message whose unset fields take the dataclass defaults."""
    given = {f.name: value for f, value in msg.ListFields()}
    if "fallback" in given:
        given["fallback"] = tuple(
            frozenset(t for t in s.tags if t and t != GENERAL) for s in given["fallback"]
        )
    return kind(**given)


def _gate(msg: pb.ApprovalGate) -> ApprovalGate:
    if not msg.required:
        return _NO_GATE
    return ApprovalGate(True, msg.message, msg.timeout or ApprovalGate.timeout)


_NESTED = ("retries", "health", "restart", "approval")
_read_spec = reader(JobSpec, pb.JobSpec.DESCRIPTOR, "tags", "map_index", *_NESTED)
_NOT_TAGS = frozenset(("", GENERAL))
_UNSET_MEANS = {name: SPEC_DEFAULTS[name] for name in ("kind", "slots", "replicas", "trigger_rule")}


def spec_from_pb(msg: pb.JobSpec) -> JobSpec:
    """A job's spec from the wire: once per job submitted, so the fields the message has set are
    read (`wire.reader`) and a policy left unset is the shared default, which `JobSpec.to_dict`
    recognises by identity."""
    values = _read_spec(msg)
    for name, unset in _UNSET_MEANS.items():  # the wire's "" or 0: the spec's default
        if not values.get(name, True):
            values[name] = unset
    tags = frozenset(msg.tags)
    values["tags"] = tags - _NOT_TAGS if not _NOT_TAGS.isdisjoint(tags) else tags
    if msg.map_of:
        values["map_index"] = msg.map_index
    has = msg.HasField
    if has("retries"):
        values["retries"] = _policy(msg.retries, RetryPolicy)
    if has("health"):
        values["health"] = _policy(msg.health, HealthCheck)
    if has("restart"):
        values["restart"] = _policy(msg.restart, RestartPolicy)
    if has("approval"):
        values["approval"] = _gate(msg.approval)
    return JobSpec(**values)


def spec_to_pb(spec: JobSpec) -> pb.JobSpec:
    """The wire form of a spec. Policies left at their defaults are not sent (`spec_from_pb` reads an
    absent policy as the default): a job is converted at every assignment, so this is a hot path.
    `secrets` maps env var -> secret name: the values never travel in a spec."""
    msg = to_message(pb.JobSpec, spec)
    r = spec.retries
    if r != _NO_RETRIES:
        fallback = [pb.TagSet(tags=sorted(tags)) for tags in r.fallback]
        msg.retries.CopyFrom(to_message(pb.RetryPolicy, r, fallback=fallback))
    if spec.is_service or spec.health != _NO_HEALTH:  # the worker reads a service's check from it
        msg.health.CopyFrom(to_message(pb.HealthCheck, spec.health))
    if spec.restart != _NO_RESTART:
        msg.restart.CopyFrom(to_message(pb.RestartPolicy, spec.restart))
    if spec.approval != _NO_GATE:
        msg.approval.CopyFrom(to_message(pb.ApprovalGate, spec.approval))
    return msg


def attempt_to_pb(attempt: Attempt) -> pb.AttemptInfo:
    return to_message(pb.AttemptInfo, attempt)


def job_to_pb(state: ClusterState, job: Job, with_spec: bool = False) -> pb.JobInfo:
    worker = state.workers.get(job.worker_id)
    spec = job.spec
    info = to_message(
        pb.JobInfo,
        job,
        spec,
        reason=state.waiting_reason(job) if job.state.value == "READY" else job.reason,
        attempt=len(job.attempts),
        worker_name=worker.name if worker else "",
        attempts=[attempt_to_pb(a) for a in job.attempts],
        has_result=job.result is not None,
        decision_json=json.dumps(job.decision) if job.decision else "",
        approval_message=spec.approval.message if spec.approval.required else "",
    )
    if with_spec:
        info.spec.CopyFrom(spec_to_pb(spec))
    return info


def run_to_pb(state: ClusterState, run: Run, with_jobs: bool = True) -> pb.RunInfo:
    counts: dict[str, int] = {}
    for job in run.jobs.values():
        counts[job.state.value] = counts.get(job.state.value, 0) + 1
    info = to_message(pb.RunInfo, run, counts=counts or run.counts)  # a finished run read without jobs
    if with_jobs:
        info.jobs.extend(job_to_pb(state, job) for job in run.jobs.values())
    return info


def worker_to_pb(worker: Worker) -> pb.WorkerInfo:
    return to_message(
        pb.WorkerInfo,
        worker,
        running=len(worker.attempts),
        cpus_used=worker.used_millicpus / 1000,
        memory_used_mb=worker.used_memory_mb,
        gpus_used=sorted(worker.gpu_holders),
    )


def exit_from_pb(msg: pb.AttemptExit) -> AttemptExit:
    return from_message(AttemptExit, msg, result=msg.result_json if msg.has_result else None)


def hello_from_pb(msg: pb.WorkerHello) -> WorkerHello:
    held = tuple(
        from_message(HeldAttempt, h, exit=exit_from_pb(h.exit) if h.finished else None) for h in msg.held
    )
    return from_message(WorkerHello, msg, held=held)


def service_to_pb(state: ClusterState, job: Job) -> pb.ServiceInfo:
    attempt = job.current
    live = attempt is not None and not attempt.state.terminal
    worker = state.workers.get(attempt.worker_id) if attempt is not None else None
    ports = dict(attempt.ports) if live and attempt is not None else {}
    return pb.ServiceInfo(
        id=job.id,
        service=job.spec.service_id,
        run_id=job.run_id,
        worker_id=attempt.worker_id if live and attempt is not None else "",
        worker_name=worker.name if live and worker is not None else "",
        host=attempt.host if live and attempt is not None else "",
        port=next(iter(ports.values()), 0),
        ports=ports,
        endpoint=attempt.endpoint if live and attempt is not None else "",
        state=job.state.value,
        restarts=job.restarts,
        started_at=attempt.started_at if live and attempt is not None else 0.0,
        reason=state.waiting_reason(job) if job.state.value == "READY" else job.reason,
    )
