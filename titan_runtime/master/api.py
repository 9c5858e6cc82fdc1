"""The client API (`titan.v1.Titan`): submissions, status, waiting, logs, KV and artifacts.

Reads are answered from the in-memory state; writes go through the master loop and return only
once committed. Errors leave as gRPC status codes with a sentence a user can act on; the SDK
turns them into exceptions.
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from titan_runtime.core.cluster import NotFound
from titan_runtime.core.model import RUN_ID_PATTERN, Attempt, InvalidSpec, Job, JobSpec, Run, RunState
from titan_runtime.diskspace import DiskGuard
from titan_runtime.master.api_artifacts import ArtifactsApi
from titan_runtime.master.api_autoscaler import AutoscalerApi
from titan_runtime.master.api_dynamic import DynamicApi
from titan_runtime.master.api_retention import RetentionApi
from titan_runtime.master.api_secrets import SecretsApi
from titan_runtime.master.api_tokens import TokensApi
from titan_runtime.master.api_watch import WatchApi, visible_workers
from titan_runtime.master.artifacts import ArtifactError, ArtifactStore
from titan_runtime.master.auth import Caller, Credentials, caller_of, describe_owner
from titan_runtime.master.convert import job_to_pb, run_to_pb, service_to_pb, spec_from_pb, worker_to_pb
from titan_runtime.master.errors import RequestError
from titan_runtime.master.history import History
from titan_runtime.master.keys import RESERVED_PREFIX
from titan_runtime.master.logs import LogStore
from titan_runtime.master.loop import MasterLoop, collector_paused
from titan_runtime.master.watch import WatchHub
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.proto import titan_pb2_grpc as rpc
from titan_runtime.store import MAX_KV_VALUE_BYTES, KvTypeError
from titan_runtime.store.base import RunQuery

log = logging.getLogger("titan.master")

MAX_KEY_BYTES = 1024
#: Keys in one page of ListKv: the default, and the most a client may ask for.
KV_PAGE, MAX_KV_PAGE = 1000, 10_000
#: Runs a listing without a limit gives: the latest thousand, not a history of millions.
LIST_RUNS_DEFAULT = 1000
#: The most one listing gives (the answer stays a few MB).
LIST_RUNS_MAX = 10_000
#: When a finished attempt's log stops growing for this long, a follower stops waiting for more.
LOG_SETTLE_S = 5.0
#: KV operations that can create a key (and so count against a run's kv_keys_per_run).
KV_CREATING = ("put", "incr", "cas", "sadd")
KV_WRITING = (*KV_CREATING, "delete", "srem")


def new_run_id() -> str:
    return "r-" + secrets.token_hex(5)


def run_filter(request: pb.ListRunsRequest) -> Callable[[Run], bool]:
    """Whether a run passes ListRuns' filters (each one given must hold)."""
    states = set(request.states)
    labels = dict(request.labels)

    def wanted(run: Run) -> bool:
        return (
            (not request.agent_run_id or run.agent_run_id == request.agent_run_id)
            and (not states or run.state.value in states)
            and (not request.name or fnmatch.fnmatchcase(run.name, request.name))
            and all(run.labels.get(k) == v for k, v in labels.items())
            and run.created_at >= request.since
        )

    return wanted


#: Longest reason a Cancel may give its jobs (shown in status, stored with each job).
MAX_CANCEL_REASON = 500


class TitanServicer(
    DynamicApi,
    AutoscalerApi,
    SecretsApi,
    TokensApi,
    RetentionApi,
    ArtifactsApi,
    WatchApi,
    rpc.TitanServicer,
):
    def __init__(
        self,
        loop: MasterLoop,
        logs: LogStore,
        artifacts: ArtifactStore,
        credentials: Credentials,
        disk: DiskGuard | None = None,
        history: History | None = None,
    ) -> None:
        self._loop = loop
        self._state = loop.state
        self._logs = logs
        self._artifacts = artifacts
        self._credentials = credentials
        self._disk = disk
        self._limits = loop.state.config.limits
        self.history = history or History(loop.state, loop.store)
        self.watch_hub = WatchHub()

    # -------------------------------------------------------------- helpers

    def check_disk(self) -> None:
        """Refuse what only adds data while the data dir's disk is below its watermark."""
        if self._disk is not None and self._disk.low:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, self._disk.describe("the master's disk"))

    async def _resolve(self, ref: str, context: grpc.aio.ServicerContext) -> Job:
        try:
            job = self.history.resolve(ref)
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        await self._check_scope(job.run_id, context, write=False)
        return job

    async def _check_scope(self, run_id: str, context: grpc.aio.ServicerContext, write: bool) -> Caller:
        caller = caller_of(context, self._credentials)
        if write and not self._may_change(caller, run_id):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"{caller.describe()} cannot change run {run_id}"
            )
        return caller

    def _may_change(self, caller: Caller, run_id: str) -> bool:
        run = self.history.header(run_id)
        return caller.may_change(run_id, run.submitted_by if run is not None else "")

    # -------------------------------------------------------------- runs and jobs

    async def SubmitRun(
        self, request: pb.SubmitRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitRunResponse:
        try:
            return await self.submit(request, caller_of(context, self._credentials))
        except RequestError as exc:
            await context.abort(exc.code, str(exc))
            raise

    async def submit(
        self, request: pb.SubmitRunRequest, caller: Caller | None = None
    ) -> pb.SubmitRunResponse:
        """Accept a run (the RPC, saved DAGs and schedules all come here); `caller` None: the master's own."""
        self.check_disk()
        run_id = request.run_id or new_run_id()
        if not RUN_ID_PATTERN.match(run_id):
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid run id {run_id!r}: use 1-128 letters, digits, '_', '-', '.' or '@',"
                " starting with a letter or digit",
            )
        state = self._state
        submitter = "" if caller is None else caller.submitter

        def accept(now: float) -> tuple[Any, bool]:
            if caller is not None:
                self._check_replaces_only_its_own(specs, caller)
            ended = None if run_id in state.runs else self.history.find(run_id)  # submitted again
            return state.submit_run(
                run_id,
                request.name,
                specs,
                now,
                dict(request.labels),
                request.agent_run_id,
                submitter,
                ended,
                request.open_for,
            )

        with collector_paused(len(request.jobs)):
            specs = self._specs(request.jobs)
            self.check_secrets(specs, caller)
            try:
                run, existed = await self._loop.call(accept)
            except InvalidSpec as exc:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        return pb.SubmitRunResponse(run_id=run.id, job_ids=list(run.jobs), existed=existed)

    def _check_replaces_only_its_own(self, specs: list[JobSpec], caller: Caller) -> None:
        """A job's credential may redeploy the services of its own run (a submit token those of
        its runs), never another's: the service's endpoint would then point at whatever it chose."""
        for spec in specs:
            for other_run, job_id in self._state.services.get(spec.service_id, ()) if spec.is_service else ():
                if (
                    self._may_change(caller, other_run)
                    or self._state.runs[other_run].jobs[job_id].state.terminal
                ):
                    continue
                raise RequestError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"service {spec.service_id!r} is running in run {other_run}: {caller.describe()} may "
                    "replace only the services of its own runs; redeploy it with the cluster token or an admin token",
                )

    def _specs(self, jobs: Any) -> list[JobSpec]:
        """Wire specs as the core's, each artifact checked to be on the master."""
        limits = self._limits
        if len(jobs) > limits.jobs_per_run:  # before any work on them
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                limits.refusal("jobs_per_run", f"{len(jobs):,} jobs were sent"),
            )
        for job in jobs:
            size = job.ByteSize()
            if size > limits.spec_bytes:
                raise RequestError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    limits.refusal("spec_bytes", f"job {job.id[:128]}: its spec is {size:,} bytes"),
                )
        try:
            specs = [spec_from_pb(job) for job in jobs]
        except (InvalidSpec, TypeError, ValueError) as exc:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        for spec in specs:
            for artifact in (spec.script_hash, spec.project_hash):
                try:
                    present = not artifact or self._artifacts.has(artifact)
                except ArtifactError as exc:
                    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"job {spec.id}: {exc}") from None
                if not present:
                    raise RequestError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"job {spec.id}: artifact {artifact} was never uploaded; upload it before submitting",
                    )
        return specs

    async def GetJob(self, request: pb.JobRef, context: grpc.aio.ServicerContext) -> pb.JobInfo:
        job = await self._resolve(request.ref, context)
        info = job_to_pb(self._state, job, with_spec=True)
        for attempt, sent in zip(job.attempts, info.attempts, strict=True):
            if not attempt.state.terminal:  # its log so far: a follower can start near the end
                path = self._logs.path(job.run_id, job.id, attempt.number)
                sent.log_size = self._logs.size(attempt.id, path)
        return info

    async def GetRun(self, request: pb.RunRef, context: grpc.aio.ServicerContext) -> pb.RunInfo:
        try:
            run = self.history.run(request.run_id)
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        if not request.select_jobs:
            return run_to_pb(self._state, run)
        if len(request.job_states) > 16 or request.job_limit < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "at most 16 job states and a limit >= 0")
        states = set(request.job_states)
        limit = request.job_limit or len(run.jobs)
        info = run_to_pb(self._state, run, with_jobs=False)
        if states:  # none: the run's header (a dashboard's check on every page load), not a scan
            picked = (job for job in run.jobs.values() if job.state.value in states)
            info.jobs.extend(job_to_pb(self._state, job) for job in itertools.islice(picked, limit))
        return info

    async def ListRuns(
        self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRunsResponse:
        if len(request.name) > 256 or len(request.states) > 16 or len(request.labels) > 64:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "at most 16 states, 64 labels, a 256-character name"
            )
        unknown = set(request.states) - {s.value for s in RunState}
        if unknown:
            words = ", ".join(s.value for s in RunState)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"unknown run state(s) {sorted(unknown)}: use {words}"
            )
        wanted = run_filter(request)
        query = RunQuery(
            states=frozenset(request.states),
            since=request.since,
            before_seq=max(0, request.before_seq),
            agent_run_id=request.agent_run_id or None,
            limit=min(request.limit or LIST_RUNS_DEFAULT, LIST_RUNS_MAX),
        )
        runs = itertools.islice((r for r in self.history.runs(query) if wanted(r)), query.limit)
        return pb.ListRunsResponse(runs=[run_to_pb(self._state, r, with_jobs=False) for r in runs])

    async def WaitJob(self, request: pb.WaitRequest, context: grpc.aio.ServicerContext) -> pb.JobInfo:
        job = await self._resolve(request.ref, context)
        deadline = self._loop.clock() + (request.timeout if request.timeout > 0 else 60.0)
        while not job.state.terminal:
            remaining = deadline - self._loop.clock()
            if remaining <= 0:
                break
            await self._loop.notifier.wait(job.key, remaining)
        return job_to_pb(self._state, job)

    async def WaitRun(self, request: pb.WaitRequest, context: grpc.aio.ServicerContext) -> pb.RunInfo:
        try:
            run = self.history.run(request.ref)
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        deadline = self._loop.clock() + (request.timeout if request.timeout > 0 else 60.0)
        while run.state.value == "RUNNING" and not run.settled:
            remaining = deadline - self._loop.clock()
            if remaining <= 0:
                break
            await self._loop.notifier.wait(run.id, remaining)
        return run_to_pb(self._state, run)

    async def Cancel(self, request: pb.CancelRequest, context: grpc.aio.ServicerContext) -> pb.CancelResponse:
        state = self._state
        if self.history.header(request.ref) is not None:
            run_id = request.ref
        else:
            run_id = (await self._resolve(request.ref, context)).run_id
        await self._check_scope(run_id, context, write=True)
        if len(request.reason) > MAX_CANCEL_REASON:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a cancel reason is at most {MAX_CANCEL_REASON} characters, not {len(request.reason):,}",
            )
        if run_id not in state.runs:  # it has ended: nothing left to cancel
            return pb.CancelResponse()
        reason = request.reason or "cancelled by user"
        try:
            cancelled = await self._loop.call(lambda now: state.cancel(request.ref, now, reason))
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        if request.wait:
            await self._wait_processes_gone(cancelled, request.timeout or 30.0)
        return pb.CancelResponse(cancelled=cancelled)

    async def _wait_processes_gone(self, refs: list[str], timeout: float) -> None:
        deadline = self._loop.clock() + timeout
        for ref in refs:
            job = self.history.resolve(ref)
            attempt = job.current
            while attempt is not None and not attempt.state.terminal:
                remaining = deadline - self._loop.clock()
                if remaining <= 0:
                    return
                await self._loop.notifier.wait(("attempt", attempt.id), remaining)

    async def GetResult(self, request: pb.JobRef, context: grpc.aio.ServicerContext) -> pb.ResultResponse:
        job = await self._resolve(request.ref, context)
        if job.result is None:
            return pb.ResultResponse(has_result=False)
        return pb.ResultResponse(has_result=True, json=job.result)

    # -------------------------------------------------------------- logs

    async def ReadLogs(
        self, request: pb.ReadLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.LogChunk]:
        job = await self._resolve(request.ref, context)
        if request.attempt < 0 or (request.attempt > max(len(job.attempts), 1) and not request.follow):
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"{job.ref} has {len(job.attempts)} attempts; there is no attempt {request.attempt}",
            )
        number = request.attempt or len(job.attempts)
        offset = max(0, request.offset)
        if request.follow:  # tells the follower it is connected, before any line (see titan.proto)
            yield pb.LogChunk(attempt=number, offset=offset)
        while True:
            if request.follow:
                while number > len(job.attempts) or number == 0:
                    if job.state.terminal:
                        return
                    await self._loop.notifier.wait(job.key, 30.0)
                    number = number or len(job.attempts)
            if number == 0 or number > len(job.attempts):
                return
            attempt = job.attempts[number - 1]
            async for chunk in self._read_attempt(job, attempt, offset, request.follow):
                yield chunk
            # Following the latest attempt (or resuming with and_later): go on with the retry, if one comes.
            if not request.follow or (request.attempt and not request.and_later):
                return
            while len(job.attempts) == number and not job.state.terminal:
                await self._loop.notifier.wait(job.key, 30.0)
            if len(job.attempts) == number:
                return
            number += 1
            offset = 0

    async def _read_attempt(
        self, job: Job, attempt: Attempt, offset: int, follow: bool
    ) -> AsyncIterator[pb.LogChunk]:
        path = self._logs.path(job.run_id, job.id, attempt.number)
        idle_since = None
        while True:
            data = self._logs.read(path, offset)
            if data:
                yield pb.LogChunk(attempt=attempt.number, offset=offset, data=data)
                offset += len(data)
                idle_since = None
                continue
            if attempt.state.terminal and offset < attempt.log_size:
                # Finished, but bytes are missing: cut (a full disk), or still on their way (a
                # worker resending after a reconnect), which a follower waits a little for.
                now = self._loop.clock()
                idle_since = idle_since or now
                if not follow or attempt.id in self._logs.cut or now - idle_since > LOG_SETTLE_S:
                    note = self._logs.missing_note(attempt.id, offset, attempt.log_size, path)
                    yield pb.LogChunk(attempt=attempt.number, offset=offset, data=note)
                    return
            elif not follow or attempt.state.terminal:
                return
            await self._logs.wait_change(attempt.id, 1.0)

    # -------------------------------------------------------------- workers

    async def ListWorkers(
        self, request: pb.Empty, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkersResponse:
        workers = visible_workers(self._state, self._loop.clock())
        return pb.ListWorkersResponse(workers=[worker_to_pb(w) for w in workers])

    async def DrainWorker(self, request: pb.DrainRequest, context: grpc.aio.ServicerContext) -> pb.WorkerInfo:
        state = self._state
        try:
            worker = state.find_worker(request.worker)
            await self._loop.call(lambda now: state.request_drain(worker.id, request.deadline, now))
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return worker_to_pb(worker)

    # -------------------------------------------------------------- services

    async def ListServices(
        self, request: pb.ServiceQuery, context: grpc.aio.ServicerContext
    ) -> pb.ListServicesResponse:
        state = self._state
        if request.id:
            try:
                jobs = self.history.service_jobs(request.id)
            except NotFound as exc:
                await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        else:
            jobs = [state.runs[r].jobs[j] for keys in state.services.values() for r, j in keys]
            jobs += self.history.ended_services() if request.all else []
        if not request.all:
            jobs = [job for job in jobs if not job.state.terminal]
        return pb.ListServicesResponse(services=[service_to_pb(state, job) for job in jobs])

    async def StopService(
        self, request: pb.ServiceRef, context: grpc.aio.ServicerContext
    ) -> pb.ServiceActionResponse:
        return await self._service_action(request.id, context, stop=True)

    async def RestartService(
        self, request: pb.ServiceRef, context: grpc.aio.ServicerContext
    ) -> pb.ServiceActionResponse:
        return await self._service_action(request.id, context, stop=False)

    async def _service_action(
        self, service_id: str, context: grpc.aio.ServicerContext, stop: bool
    ) -> pb.ServiceActionResponse:
        state = self._state
        try:
            for job in state.service_jobs(service_id):
                await self._check_scope(job.run_id, context, write=True)
            if stop:
                refs = await self._loop.call(lambda now: state.stop_service(service_id, now))
            else:
                refs = await self._loop.call(lambda now: state.restart_service(service_id, now))
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return pb.ServiceActionResponse(refs=refs)

    # -------------------------------------------------------------- audit

    async def ListAudit(self, request: pb.AuditQuery, context: grpc.aio.ServicerContext) -> pb.AuditList:
        """The latest entries of the audit log (the policy admits the cluster token alone)."""
        limit = min(request.limit or 1000, 100_000)
        entries = await self._loop.in_store(self._loop.store.audit_read, request.since, limit)
        return pb.AuditList(entries=[pb.AuditEntry(**e) for e in entries])

    # -------------------------------------------------------------- KV

    async def Kv(self, request: pb.KvRequest, context: grpc.aio.ServicerContext) -> pb.KvResponse:
        key, value, store = request.key, request.value, self._loop.store
        if not key:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty key: give a non-empty key")
        if key.startswith(RESERVED_PREFIX):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"keys starting with {RESERVED_PREFIX!r} are reserved for Titan; use another key",
            )
        if len(key.encode()) > MAX_KEY_BYTES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"key longer than {MAX_KEY_BYTES} bytes")
        if len(value.encode()) > MAX_KV_VALUE_BYTES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"value of {len(value.encode())} bytes is over the KV limit of 1 MB; "
                "store large data as an artifact (publish_artifact) and keep its name in the KV store",
            )
        op = request.op
        owner = caller_of(context, self._credentials).kv_owner  # "": the cluster's own
        if op in KV_CREATING:
            self.check_disk()
            if owner and not store.kv_exists(key) and store.kv_owned(owner) >= self._limits.kv_keys_per_run:
                what = f"{describe_owner(owner)} has created {store.kv_owned(owner):,} KV keys"
                raise RequestError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, self._limits.refusal("kv_keys_per_run", what)
                )
        if owner and op in KV_WRITING:
            holder = store.kv_owner(key)  # checked and written with no await between: atomic
            if holder is not None and holder != owner:
                raise RequestError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"KV key {key!r} belongs to {describe_owner(holder)}: {describe_owner(owner)} may change "
                    "only the keys it created; it may read this one",
                )
        try:
            if op == "get":
                found: Any = await self._loop.in_store(store.kv_get, key)
                return pb.KvResponse(found=found is not None, value=found or "")
            if op == "put":
                await self._loop.in_store(store.kv_put, key, value, owner)
                return pb.KvResponse(changed=True)
            if op == "delete":
                return pb.KvResponse(changed=await self._loop.in_store(store.kv_delete, key))
            if op == "incr":
                number = await self._loop.in_store(store.kv_incr, key, request.delta, owner)
                return pb.KvResponse(changed=True, number=number, value=str(number))
            if op == "cas":
                expected = request.expected if request.HasField("expected") else None
                changed = await self._loop.in_store(store.kv_cas, key, expected, value, owner)
                return pb.KvResponse(changed=changed)
            if op == "sadd":
                return pb.KvResponse(changed=await self._loop.in_store(store.kv_sadd, key, value, owner))
            if op == "srem":
                return pb.KvResponse(changed=await self._loop.in_store(store.kv_srem, key, value))
            if op == "smembers":
                return pb.KvResponse(members=await self._loop.in_store(store.kv_smembers, key))
        except KvTypeError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown KV operation {op!r}")
        raise AssertionError  # unreachable: abort raises

    async def ListKv(self, request: pb.KvListRequest, context: grpc.aio.ServicerContext) -> pb.KvList:
        """One page of the KV store's keys (Titan's own, under RESERVED_PREFIX, are not listed)."""
        if len(request.prefix.encode()) > MAX_KEY_BYTES or len(request.after.encode()) > MAX_KEY_BYTES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"prefix or after longer than {MAX_KEY_BYTES} bytes"
            )
        if request.limit < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "limit must be 0 (the default) or positive")
        limit = min(request.limit or KV_PAGE, MAX_KV_PAGE)
        keys: list[tuple[str, str]] = []
        after, more = request.after, True
        while more and len(keys) <= limit:  # Titan's own keys are skipped, not counted
            found = await self._loop.in_store(self._loop.store.kv_keys, request.prefix, after, limit + 1)
            more = len(found) == limit + 1
            keys.extend((key, kind) for key, kind in found if not key.startswith(RESERVED_PREFIX))
            after = found[-1][0] if found else after
        return pb.KvList(
            keys=[pb.KvKeyInfo(key=key, kind=kind) for key, kind in keys[:limit]],
            more=len(keys) > limit,
        )
