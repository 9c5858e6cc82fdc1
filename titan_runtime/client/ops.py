"""Client operations written once, run by both the blocking and the asyncio client.

Each operation is a generator that yields instructions (client/instructions.py: a `Call` to make,
a `Stream` to read, a `Sleep` before a retry) and receives their results; `TitanClient` drives it
with blocking stubs, `AsyncTitanClient` with awaits (client/drivers.py). Turning jobs into specs
and uploading what they name is in client/specs.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from titan_runtime.client.errors import (
    Conflict,
    InvalidJob,
    JobNotFound,
    TitanConnectionError,
    TitanTimeoutError,
)
from titan_runtime.client.instructions import Call, Op, Sleep, Stream, idempotent
from titan_runtime.client.job import TitanJob
from titan_runtime.client.reconnect import Outage, Reconnect
from titan_runtime.client.records import (
    AgentRunRecord,
    ArtifactRecord,
    JobRecord,
    LogLine,
    LogReader,
    RunRecord,
    ScheduleRecord,
    ServiceRecord,
    WatchEvent,
    WorkerRecord,
)
from titan_runtime.client.specs import (  # noqa: F401 - public here too
    HEALTH_KEYS,
    RESTART_KEYS,
    UPLOAD_CHUNK,
    UploadCache,
    file_hash,
    job_spec,
    job_specs,
    parse_duration,
    upload,
    upload_project,
)
from titan_runtime.client.transfer import ArtifactWriter
from titan_runtime.proto import titan_pb2 as pb

#: The most keys the master gives in one page of ListKv.
KV_PAGE_MAX = 10_000
#: One long-poll on the master; a longer wait is several of them.
WAIT_SLICE = 30.0


# ------------------------------------------------------------------ jobs and runs


def submit_run(
    jobs: Sequence[TitanJob],
    name: str = "",
    run_id: str = "",
    labels: dict[str, str] | None = None,
    agent_run_id: str = "",
    base_dir: Path | None = None,
    uploads: UploadCache | None = None,
    reconnect: Reconnect | None = None,
) -> Op[pb.SubmitRunResponse]:
    specs = yield from job_specs(jobs, base_dir, uploads)
    request = pb.SubmitRunRequest(
        run_id=run_id, name=name, labels=labels or {}, agent_run_id=agent_run_id or "", jobs=specs
    )
    call = Call("SubmitRun", request, timeout=120.0)
    # With a run id the master answers a repeat with the run it already has; without one, a repeat
    # after a lost answer would start the work twice.
    return (yield from idempotent(call, reconnect if run_id else None))


def submit_functions(
    specs: Sequence[pb.JobSpec], run_id: str, name: str, labels: dict[str, str], open_for: float
) -> Op[str]:
    """Function tasks (client/futures.py) into the session run `run_id` (AddJobs), or into a new
    one when it is "": the run's id. The run stays open `open_for` seconds for the next ones."""
    if run_id:
        yield Call("AddJobs", pb.AddJobsRequest(run_id=run_id, jobs=specs, open_for=open_for))
        return run_id
    request = pb.SubmitRunRequest(name=name, labels=labels, jobs=specs, open_for=open_for)
    return str((yield Call("SubmitRun", request, timeout=120.0)).run_id)


def get_job(ref: str, reconnect: Reconnect | None = None) -> Op[JobRecord]:
    return JobRecord.from_pb((yield from idempotent(Call("GetJob", pb.JobRef(ref=ref)), reconnect)))


def get_run(
    run_id: str, reconnect: Reconnect | None = None, jobs: Sequence[str] | None = None, limit: int = 0
) -> Op[RunRecord]:
    """The run with every job, or (`jobs` given) only its jobs in those states, at most `limit`."""
    ref = pb.RunRef(run_id=run_id)
    if jobs is not None:
        ref.select_jobs, ref.job_limit = True, limit
        ref.job_states.extend(state.upper() for state in jobs)
    return RunRecord.from_pb((yield from idempotent(Call("GetRun", ref), reconnect)))


def list_runs(
    limit: int = 0,
    agent_run_id: str = "",
    reconnect: Reconnect | None = None,
    states: Sequence[str] = (),
    name: str = "",
    labels: dict[str, str] | None = None,
    since: float = 0.0,
    before_seq: int = 0,
) -> Op[list[RunRecord]]:
    request = pb.ListRunsRequest(
        limit=limit,
        agent_run_id=agent_run_id,
        states=[s.upper() for s in states],
        name=name,
        labels=labels or {},
        since=since,
        before_seq=before_seq,
    )
    call = Call("ListRuns", request)
    response = yield from idempotent(call, reconnect)
    return [RunRecord.from_pb(r) for r in response.runs]


def _long_poll(
    method: str,
    ref: str,
    timeout: float | None,
    parse: Any,
    done: Any,
    what: str,
    reconnect: Reconnect | None,
) -> Op[Any]:
    """Ask the master to wait (in slices of WAIT_SLICE) until `done(record)`; TimeoutError after `timeout`.

    A slice cut by a master restart is asked again (with what is left of `timeout`), so a wait
    outlives the restart as the job does."""
    clock = reconnect.clock if reconnect is not None else time.monotonic
    deadline = None if timeout is None else clock() + timeout
    outage = reconnect.outage() if reconnect is not None else None
    while True:
        remaining = WAIT_SLICE if deadline is None else min(WAIT_SLICE, deadline - clock())
        request = pb.WaitRequest(ref=ref, timeout=max(remaining, 0.0))
        try:
            response = yield Call(method, request, timeout=max(remaining, 0.0) + 30)
        except TitanConnectionError as exc:
            if outage is None:
                raise
            yield Sleep(outage.retry_in(exc, not_after=deadline))
            continue
        if outage is not None:
            outage.reset()
        record = parse(response)
        if done(record):
            return record
        if deadline is not None and clock() >= deadline:
            raise TitanTimeoutError(f"{what} {ref} is still {record.state} after {timeout:g}s")


def wait_job(ref: str, timeout: float | None, reconnect: Reconnect | None = None) -> Op[JobRecord]:
    """Until the job is terminal."""
    return (
        yield from _long_poll(
            "WaitJob", ref, timeout, JobRecord.from_pb, lambda r: r.terminal, "job", reconnect
        )
    )


def wait_run(run_id: str, timeout: float | None, reconnect: Reconnect | None = None) -> Op[RunRecord]:
    """Until the run is terminal, or settled (only its healthy services keep it running)."""
    done = lambda r: r.terminal or r.settled  # noqa: E731
    return (yield from _long_poll("WaitRun", run_id, timeout, RunRecord.from_pb, done, "run", reconnect))


def cancel(ref: str, wait: bool = False, timeout: float = 30.0, reason: str = "") -> Op[list[str]]:
    request = pb.CancelRequest(ref=ref, wait=wait, timeout=timeout, reason=reason)
    response = yield Call("Cancel", request, timeout=timeout + 30)
    return list(response.cancelled)


def get_result(ref: str, reconnect: Reconnect | None = None) -> Op[Any]:
    """What the job passed to task.set_result (decoded from its JSON), or None."""
    response = yield from idempotent(Call("GetResult", pb.JobRef(ref=ref)), reconnect)
    return json.loads(response.json) if response.has_result else None


def list_workers(reconnect: Reconnect | None = None) -> Op[list[WorkerRecord]]:
    response = yield from idempotent(Call("ListWorkers", pb.Empty()), reconnect)
    return [WorkerRecord.from_pb(w) for w in response.workers]


# ------------------------------------------------------------------ logs and downloads


def read_logs(ref: str, attempt: int = 0, offset: int = 0) -> Op[list[LogLine]]:
    """Every line of one attempt's log so far (unended last lines included)."""
    reader = LogReader()
    lines: list[LogLine] = []
    request = pb.ReadLogsRequest(ref=ref, attempt=attempt, offset=offset, follow=False)
    yield Stream("ReadLogs", request, lambda chunk: lines.extend(reader.feed(chunk)))
    return lines + reader.end()


def download(artifact_hash: str, dest: Path) -> Op[Path]:
    """Write the artifact with this content hash to `dest` (under a temporary name until it is
    whole and its hash checked)."""
    writer = ArtifactWriter(dest, artifact_hash)
    try:
        yield Stream(
            "GetArtifact", pb.ArtifactRef(hash=artifact_hash), lambda chunk: writer.write(chunk.data)
        )
    except BaseException:
        writer.abort()
        raise
    return writer.finish()


class LogFollow:
    """Where a log follower is, so that a stream cut by a master restart resumes at the very next
    line: no line lost, none twice.

    The position is the reader's: the attempt and the offset of the last record read (pieces of a
    line not ended yet are kept in the reader, so they are not asked for again). Following "the
    latest attempt and the retries after it" (no explicit attempt) resumes at that attempt and
    offset with `and_later`, so it still goes on into later attempts; following one explicit
    attempt resumes within that attempt only. Each driver opens `request()` as a stream, passes
    every chunk through `lines()`, and on a TitanConnectionError sleeps `retry_in(error)`
    (which raises when the error is not one to ride out) and opens the stream again; when the
    stream ends, `end()` gives the last lines that were never ended with a newline.
    """

    def __init__(
        self, ref: str, offset: int, attempt: int | None, reconnect: Reconnect | None, follow: bool = True
    ) -> None:
        self.ref = ref
        self.reader = LogReader(attempt or 0, offset)
        self.follow = follow  # False: what is logged so far, then the stream ends
        self.and_later = not attempt and follow
        self._outage: Outage | None = reconnect.outage() if reconnect is not None else None

    def request(self) -> pb.ReadLogsRequest:
        return pb.ReadLogsRequest(
            ref=self.ref,
            attempt=self.reader.attempt,
            offset=self.reader.offset,
            follow=self.follow,
            and_later=self.and_later,
        )

    def lines(self, chunk: pb.LogChunk) -> list[LogLine]:
        """The chunk's lines. Any chunk, even the empty one a follow stream opens with, proves the
        master is there again."""
        if self._outage is not None:
            self._outage.reset()
        return self.reader.feed(chunk)

    def end(self) -> list[LogLine]:
        return self.reader.end()

    def retry_in(self, error: TitanConnectionError) -> float:
        if self._outage is None:
            raise error
        return self._outage.retry_in(error)


class Watching:
    """A watch stream's request, and its reconnection: after a master restart the stream is opened
    again, and its first event is a new snapshot (the changes in between are in it)."""

    def __init__(
        self,
        kinds: Sequence[str],
        run_id: str,
        recent_runs: int,
        reconnect: Reconnect | None,
        interval: float | None = None,
        results: bool = False,
    ) -> None:
        self._request = pb.WatchRequest(
            kinds=list(kinds), run_id=run_id, recent_runs=recent_runs, interval=interval, results=results
        )
        self._outage: Outage | None = reconnect.outage() if reconnect is not None else None

    def request(self) -> pb.WatchRequest:
        return self._request

    def event(self, message: pb.WatchEvent) -> WatchEvent:
        if self._outage is not None:
            self._outage.reset()
        return WatchEvent.from_pb(message)

    def retry_in(self, error: TitanConnectionError) -> float:
        if self._outage is None:
            raise error
        return self._outage.retry_in(error)


def add_jobs(
    run_id: str, jobs: Sequence[TitanJob], base_dir: Path | None, uploads: UploadCache
) -> Op[list[str]]:
    specs = yield from job_specs(jobs, base_dir, uploads)
    response = yield Call("AddJobs", pb.AddJobsRequest(run_id=run_id, jobs=specs))
    return list(response.job_ids)


def add_iteration(
    run_id: str, jobs: Sequence[str | TitanJob], after: str | TitanJob, max_iterations: int
) -> Op[list[str]]:
    """The next iteration of the sub-graph `jobs` (ids, or the TitanJobs submitted under them)."""
    request = pb.AddIterationRequest(
        run_id=run_id, jobs=[_job_id(j) for j in jobs], after=_job_id(after), max_iterations=max_iterations
    )
    return list((yield Call("AddIteration", request)).job_ids)


def _job_id(job: str | TitanJob) -> str:
    if isinstance(job, TitanJob):
        return job.id
    if not isinstance(job, str):
        raise InvalidJob(f"expected a job id or a TitanJob, got {type(job).__name__} {job!r}")
    return job


def decide_gate(ref: str, approved: bool, comment: str, by: str) -> Op[JobRecord]:
    request = pb.GateDecision(ref=ref, approved=approved, comment=comment, by=by)
    return JobRecord.from_pb((yield Call("DecideGate", request)))


def list_approvals() -> Op[list[JobRecord]]:
    return [JobRecord.from_pb(j) for j in (yield Call("ListApprovals", pb.Empty())).jobs]


def list_agent_runs() -> Op[list[AgentRunRecord]]:
    return [AgentRunRecord.from_pb(a) for a in (yield Call("ListAgentRuns", pb.Empty())).agent_runs]


def save_dag(
    name: str,
    jobs: Sequence[TitanJob],
    base_dir: Path | None,
    uploads: UploadCache,
    labels: dict[str, str] | None,
) -> Op[str]:
    specs = yield from job_specs(jobs, base_dir, uploads)
    run = pb.SubmitRunRequest(name=name, labels=labels or {}, jobs=specs)
    return (yield Call("SaveDag", pb.SavedDag(name=name, run=run))).name


def submit_saved_dag(name: str, run_id: str) -> Op[pb.SubmitRunResponse]:
    return (yield Call("SubmitSavedDag", pb.SavedDagRef(name=name, run_id=run_id)))


def named_call(method: str, request: Any) -> Op[None]:
    yield Call(method, request)


def get_saved_dag(name: str) -> Op[dict[str, Any]]:
    """A saved DAG as a dict: its name, when it was saved, and the run it submits (as JSON)."""
    for dag in (yield Call("ListSavedDags", pb.Empty())).dags:
        if dag.name == name:
            from google.protobuf import json_format  # 14 ms to import: every CLI command would pay it

            run = json_format.MessageToDict(dag.run, preserving_proto_field_name=True)
            return {"name": dag.name, "saved_at": dag.saved_at, **run}
    raise JobNotFound(f"no saved DAG {name!r}: list them with `titan-runtime dags list`")


def list_saved_dags() -> Op[list[str]]:

    return sorted(d.name for d in (yield Call("ListSavedDags", pb.Empty())).dags)


def add_schedule(name: str, dag: str, cron: str, catch_up: bool, seconds: bool = False) -> Op[ScheduleRecord]:
    request = pb.Schedule(name=name, dag=dag, cron=cron, catch_up=catch_up, seconds=seconds)
    return ScheduleRecord.from_pb((yield Call("AddSchedule", request)))


def list_schedules() -> Op[list[ScheduleRecord]]:
    return sorted(
        (ScheduleRecord.from_pb(s) for s in (yield Call("ListSchedules", pb.Empty())).schedules),
        key=lambda s: s.name,
    )


def list_services(service_id: str = "", include_ended: bool = False) -> Op[list[ServiceRecord]]:
    response = yield Call("ListServices", pb.ServiceQuery(id=service_id, all=include_ended))
    return [ServiceRecord.from_pb(s) for s in response.services]


def service_action(method: str, service_id: str) -> Op[list[str]]:
    return list((yield Call(method, pb.ServiceRef(id=service_id))).refs)


def service_endpoint(service_id: str, all_instances: bool = False) -> Op[str | list[str]]:
    """The newest deployment's healthy endpoint(s); Conflict when none is healthy yet."""
    instances = yield from list_services(service_id)
    if instances:
        newest = instances[-1].run_id
        healthy = [
            s.endpoint for s in instances if s.run_id == newest and s.state == "HEALTHY" and s.endpoint
        ]
        if not healthy:  # mid-redeploy: the previous deployment still serves
            healthy = [s.endpoint for s in instances if s.state == "HEALTHY" and s.endpoint]
        if healthy:
            return healthy if all_instances else healthy[0]
    states = ", ".join(f"{s.id} {s.state}" for s in instances) or "no running instance"
    raise Conflict(f"service {service_id} has no healthy instance ({states})")


def drain_worker(worker: str, deadline: float = 0.0) -> Op[WorkerRecord]:
    return WorkerRecord.from_pb(
        (yield Call("DrainWorker", pb.DrainRequest(worker=worker, deadline=deadline)))
    )


# ------------------------------------------------------------------ named artifacts


def publish_artifact(name: str, path: Path, run_id: str = "", known: UploadCache | None = None) -> Op[str]:
    """Upload a file and give it a name (in a run's namespace, or the cluster's when run_id is empty)."""
    if not path.is_file():
        raise InvalidJob(f"cannot publish {path}: no such file")
    artifact_hash = yield from upload(path, known)
    yield Call("NameArtifact", pb.NamedArtifact(name=name, run_id=run_id, hash=artifact_hash))
    return artifact_hash


def resolve_artifact(name: str, run_id: str = "") -> Op[pb.NamedArtifact]:
    return (yield Call("ResolveArtifact", pb.NamedArtifact(name=name, run_id=run_id)))


def list_artifacts(run_id: str = "", limit: int = 0) -> Op[list[ArtifactRecord]]:
    answer = yield Call("ListArtifacts", pb.ArtifactListRequest(run_id=run_id, limit=limit))
    return [ArtifactRecord.from_pb(a) for a in answer.artifacts]


# ------------------------------------------------------------------ KV


def kv(op: str, key: str, value: str = "", expected: str | None = None, delta: int = 0) -> Op[pb.KvResponse]:
    if not isinstance(key, str) or not key:
        raise InvalidJob("KV keys must be non-empty strings")
    request = pb.KvRequest(op=op, key=key, value=value, delta=delta)
    if expected is not None:
        request.expected = expected
    return (yield Call("Kv", request))


def kv_keys(prefix: str = "", limit: int = 0) -> Op[dict[str, str]]:
    """Key -> kind ("value" or "set") of the keys that start with `prefix`, in order, page after
    page (at most `limit` of them; 0: all)."""
    keys: dict[str, str] = {}
    after = ""
    while True:
        want = 0 if not limit else min(limit - len(keys), KV_PAGE_MAX)
        page = yield Call("ListKv", pb.KvListRequest(prefix=prefix, after=after, limit=want))
        keys.update((k.key, k.kind) for k in page.keys)
        if not page.more or not page.keys or (limit and len(keys) >= limit):
            return keys
        after = page.keys[-1].key


def kv_incr(key: str, amount: int) -> Op[int]:
    return (yield from kv("incr", key, delta=int(amount))).number


def as_text(value: Any, what: str = "value") -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise Conflict(f"the KV {what} must be UTF-8 text") from None
    return value if isinstance(value, str) else str(value)
