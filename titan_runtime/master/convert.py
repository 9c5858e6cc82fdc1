"""Translation between the wire (protobuf) and the core's records. Nothing else lives here."""

from __future__ import annotations

import json
from dataclasses import asdict
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
from titan_runtime.proto import titan_pb2 as pb

P = TypeVar("P")


def _policy(msg: Any, field: str, kind: type[P]) -> P:
    """A policy message whose unset fields take the dataclass defaults."""
    if not msg.HasField(field):
        return kind()
    given = {f.name: value for f, value in getattr(msg, field).ListFields()}
    if "fallback" in given:
        given["fallback"] = tuple(
            frozenset(t for t in s.tags if t and t != GENERAL) for s in given["fallback"]
        )
    return kind(**given)


def _gate(msg: pb.JobSpec) -> ApprovalGate:
    if not msg.HasField("approval") or not msg.approval.required:
        return ApprovalGate()
    return ApprovalGate(True, msg.approval.message, msg.approval.timeout or ApprovalGate.timeout)


def spec_from_pb(msg: pb.JobSpec) -> JobSpec:
    return JobSpec(
        id=msg.id,
        kind=msg.kind or "batch",
        script_name=msg.script_name,
        script_hash=msg.script_hash,
        command=tuple(msg.command),
        args=tuple(msg.args),
        env=dict(msg.env),
        tags=frozenset(t for t in msg.tags if t and t != GENERAL),
        priority=msg.priority,
        timeout=msg.timeout,
        delay=msg.delay,
        parents=tuple(msg.parents),
        retries=_policy(msg, "retries", RetryPolicy),
        affinity=msg.affinity,
        node=msg.node,
        labels=dict(msg.labels),
        slots=msg.slots or 1,
        project_hash=msg.project_hash,
        workdir=msg.workdir,
        memory_mb=msg.memory_mb,
        port=msg.port,
        ports=tuple(msg.ports),
        health=_policy(msg, "health", HealthCheck),
        restart=_policy(msg, "restart", RestartPolicy),
        replicas=msg.replicas or 1,
        service=msg.service,
        trigger_rule=msg.trigger_rule or "all_success",
        when=msg.when,
        branch=msg.branch,
        map_over=msg.map_over,
        map_of=msg.map_of,
        map_index=msg.map_index if msg.map_of else -1,
        iteration=msg.iteration,
        approval=_gate(msg),
        allow_failure=msg.allow_failure,
        secrets=dict(msg.secrets),
    )


_NO_RETRIES, _NO_HEALTH, _NO_RESTART, _NO_GATE = RetryPolicy(), HealthCheck(), RestartPolicy(), ApprovalGate()


def spec_to_pb(spec: JobSpec) -> pb.JobSpec:
    """The wire form of a spec. Policies left at their defaults are not sent (`spec_from_pb` reads an
    absent policy as the default): a job is converted at every assignment, so this is a hot path."""
    msg = pb.JobSpec(
        id=spec.id,
        kind=spec.kind,
        script_name=spec.script_name,
        script_hash=spec.script_hash,
        command=spec.command,
        args=spec.args,
        env=spec.env,
        tags=sorted(spec.tags),
        priority=spec.priority,
        timeout=spec.timeout,
        delay=spec.delay,
        parents=spec.parents,
        affinity=spec.affinity,
        node=spec.node,
        labels=spec.labels,
        slots=spec.slots,
        project_hash=spec.project_hash,
        workdir=spec.workdir,
        memory_mb=spec.memory_mb,
        port=spec.port,
        ports=spec.ports,
        replicas=spec.replicas,
        service=spec.service,
        trigger_rule=spec.trigger_rule,
        when=spec.when,
        branch=spec.branch,
        map_over=spec.map_over,
        map_of=spec.map_of,
        map_index=spec.map_index,
        iteration=spec.iteration,
        allow_failure=spec.allow_failure,
        secrets=spec.secrets,  # env var -> secret name: the values never travel in a spec
    )
    r = spec.retries
    if r != _NO_RETRIES:
        msg.retries.CopyFrom(
            pb.RetryPolicy(
                attempts=r.attempts,
                backoff_initial=r.backoff_initial,
                backoff_factor=r.backoff_factor,
                backoff_max=r.backoff_max,
                max_lost=r.max_lost,
                fallback=[pb.TagSet(tags=sorted(tags)) for tags in r.fallback],
            )
        )
    if spec.is_service or spec.health != _NO_HEALTH:  # the worker reads a service's check from it
        msg.health.CopyFrom(pb.HealthCheck(**asdict(spec.health)))
    if spec.restart != _NO_RESTART:
        msg.restart.CopyFrom(pb.RestartPolicy(**asdict(spec.restart)))
    if spec.approval != _NO_GATE:
        msg.approval.CopyFrom(pb.ApprovalGate(**asdict(spec.approval)))
    return msg


def attempt_to_pb(attempt: Attempt) -> pb.AttemptInfo:
    return pb.AttemptInfo(
        id=attempt.id,
        number=attempt.number,
        worker_id=attempt.worker_id,
        state=attempt.state.value,
        exit_code=attempt.exit_code,
        signal=attempt.signal,
        reason=attempt.reason,
        assigned_at=attempt.assigned_at,
        started_at=attempt.started_at,
        ended_at=attempt.ended_at,
        pid=attempt.pid,
        log_size=attempt.log_size,
        host=attempt.host,
        ports=attempt.ports,
        healthy=attempt.healthy,
    )


def job_to_pb(state: ClusterState, job: Job, with_spec: bool = False) -> pb.JobInfo:
    reason = state.waiting_reason(job) if job.state.value == "READY" else job.reason
    worker = state.workers.get(job.worker_id)
    info = pb.JobInfo(
        run_id=job.run_id,
        id=job.id,
        state=job.state.value,
        reason=reason,
        attempt=len(job.attempts),
        worker_id=job.worker_id,
        worker_name=worker.name if worker else "",
        exit_code=job.exit_code,
        created_at=job.created_at,
        ready_at=job.ready_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        attempts=[attempt_to_pb(a) for a in job.attempts],
        has_result=job.result is not None,
        tags=sorted(job.spec.tags),
        priority=job.spec.priority,
        parents=job.parents,
        kind=job.spec.kind,
        iteration=job.spec.iteration,
        decision_json=json.dumps(job.decision) if job.decision else "",
        approval_message=job.spec.approval.message if job.spec.approval.required else "",
    )

    if with_spec:
        info.spec.CopyFrom(spec_to_pb(job.spec))
    return info


def run_to_pb(state: ClusterState, run: Run, with_jobs: bool = True) -> pb.RunInfo:
    counts: dict[str, int] = {}
    for job in run.jobs.values():
        counts[job.state.value] = counts.get(job.state.value, 0) + 1
    info = pb.RunInfo(
        id=run.id,
        name=run.name,
        state=run.state.value,
        reason=run.reason,
        labels=run.labels,
        agent_run_id=run.agent_run_id,
        created_at=run.created_at,
        ended_at=run.ended_at,
        counts=counts,
        settled=run.settled,
    )

    if with_jobs:
        info.jobs.extend(job_to_pb(state, job) for job in run.jobs.values())
    return info


def worker_to_pb(worker: Worker) -> pb.WorkerInfo:
    return pb.WorkerInfo(
        id=worker.id,
        name=worker.name,
        host=worker.host,
        pid=worker.pid,
        tags=sorted(worker.tags),
        slots=worker.slots,
        running=len(worker.attempts),
        cpu_percent=worker.cpu_percent,
        memory_percent=worker.memory_percent,
        last_heartbeat=worker.last_heartbeat,
        state=worker.state.value,
        cpu_count=worker.cpu_count,
        memory_bytes=worker.memory_bytes,
        gpus=worker.gpus,
        version=worker.version,
        registered_at=worker.registered_at,
        pool=worker.pool,
        provider=worker.provider,
        launch_id=worker.launch_id,
    )


def exit_from_pb(msg: pb.AttemptExit) -> AttemptExit:
    return AttemptExit(
        outcome=msg.outcome,
        exit_code=msg.exit_code if msg.HasField("exit_code") else None,
        signal=msg.signal,
        reason=msg.reason,
        result=msg.result_json if msg.has_result else None,
        log_size=msg.log_size,
        ended_at=msg.ended_at,
    )


def hello_from_pb(msg: pb.WorkerHello) -> WorkerHello:
    return WorkerHello(
        worker_id=msg.worker_id,
        name=msg.name,
        host=msg.host,
        pid=msg.pid,
        tags=frozenset(msg.tags),
        slots=msg.slots,
        cpu_count=msg.cpu_count,
        memory_bytes=msg.memory_bytes,
        gpus=tuple(msg.gpus),
        version=msg.version,
        held=tuple(
            HeldAttempt(
                attempt_id=h.attempt_id,
                pid=h.pid,
                started_at=h.started_at,
                exit=exit_from_pb(h.exit) if h.finished else None,
                log_size=h.log_size,
                host=h.host,
                ports=dict(h.ports),
                healthy=h.healthy,
            )
            for h in msg.held
        ),
        draining=msg.draining,
        pool=msg.pool,
        provider=msg.provider,
        launch_id=msg.launch_id,
    )


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
