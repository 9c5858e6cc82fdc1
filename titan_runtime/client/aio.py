"""`AsyncTitanClient`: the SDK for code that runs inside an asyncio event loop (Airflow triggers, services)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from titan_runtime import config
from titan_runtime.client import audit, autoscaler, ops, secrets, tokens
from titan_runtime.client.audit import AuditRecord
from titan_runtime.client.autoscaler import AutoscalerStatusRecord, ScaleEventRecord
from titan_runtime.client.errors import JobNotFound, TitanConnectionError, error_from_rpc
from titan_runtime.client.job import TitanJob
from titan_runtime.client.pipeline import load_pipeline
from titan_runtime.client.reconnect import Reconnect
from titan_runtime.client.records import (
    AgentRunRecord,
    JobRecord,
    LogLine,
    LogReader,
    RunRecord,
    ScheduleRecord,
    ServiceRecord,
    WorkerRecord,
)
from titan_runtime.client.run import AsyncRun
from titan_runtime.client.secrets import SecretRecord
from titan_runtime.client.sync import CHANNEL_OPTIONS, _ref, _user
from titan_runtime.client.tokens import TokenRecord
from titan_runtime.client.transfer import ArtifactWriter
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.proto import titan_pb2_grpc as rpc
from titan_runtime.tls import channel, client_tls

T = TypeVar("T")


class AsyncTitanClient:
    """The same calls as `TitanClient`, as coroutines, riding out a master restart the same way
    (`reconnect_timeout`). Create it inside the event loop that uses it."""

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        data_dir: str | None = None,
        reconnect_timeout: float | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        self.address = config.address(address)
        self._reconnect = Reconnect(self.address, config.reconnect_timeout(reconnect_timeout))
        self._token = config.token(token, data_dir)
        self._metadata = (("authorization", f"Bearer {self._token}"),) if self._token else ()
        self.tls = client_tls(tls_ca, tls_cert, tls_key)
        self._channel = channel(self.address, self.tls, CHANNEL_OPTIONS, aio=True)
        self._stub = rpc.TitanStub(self._channel)
        self._uploads = ops.UploadCache()

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncTitanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self, op: ops.Op[T]) -> T:
        """`TitanClient._run` with awaits: the same operations, the same retries."""
        try:
            step = next(op)
            while True:
                if isinstance(step, ops.Sleep):
                    await asyncio.sleep(step.seconds)
                    step = op.send(None)
                    continue
                try:
                    response = await self._invoke(step)
                except TitanConnectionError as exc:
                    error = exc
                else:
                    step = op.send(response)
                    continue
                step = op.throw(error)
        except StopIteration as stop:
            return stop.value

    async def _invoke(self, call: ops.Call) -> Any:
        try:
            response = await getattr(self._stub, call.method)(
                call.request, metadata=self._metadata, timeout=call.timeout
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.address) from None
        self._reconnect.answered()
        return response

    async def _stream(self, method: str, request: Any) -> AsyncIterator[Any]:
        try:
            async for item in getattr(self._stub, method)(request, metadata=self._metadata):
                yield item
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.address) from None

    async def submit_job(
        self, job: TitanJob, run_id: str | None = None, base_dir: str | Path | None = None
    ) -> str:
        response = await self._run(
            ops.submit_run(
                [job],
                name=job.id,
                run_id=run_id or "",
                base_dir=_path(base_dir),
                uploads=self._uploads,
                reconnect=self._reconnect,
            )
        )
        return response.run_id

    async def submit_dag(
        self,
        name: str,
        jobs: Sequence[TitanJob],
        agent_run_id: str | None = None,
        *,
        run_id: str | None = None,
        labels: dict[str, str] | None = None,
        base_dir: str | Path | None = None,
    ) -> AsyncRun:
        response = await self._run(
            ops.submit_run(
                list(jobs),
                name=name,
                run_id=run_id or "",
                labels=labels,
                agent_run_id=agent_run_id or "",
                base_dir=_path(base_dir),
                uploads=self._uploads,
                reconnect=self._reconnect,
            )
        )
        return AsyncRun(response.run_id, self)

    async def submit_yaml(
        self,
        path: str | Path,
        agent_run_id: str | None = None,
        wait: bool = False,
        poll_interval: float | None = None,
        timeout: float | None = None,
        *,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        run_id: str | None = None,
    ) -> AsyncRun:
        pipeline = load_pipeline(path)
        run = await self.submit_dag(
            name or pipeline.name,
            pipeline.jobs,
            agent_run_id,
            run_id=run_id,
            labels={**pipeline.labels, **(labels or {})},
            base_dir=pipeline.path.parent,
        )
        if wait:
            await run.wait(timeout)
        return run

    async def get_job(self, job_id: str) -> JobRecord:
        return await self._run(ops.get_job(job_id, self._reconnect))

    async def get_job_status(self, job_id: str) -> str:
        return (await self.get_job(job_id)).state

    async def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        return await self._run(ops.wait_job(job_id, timeout, self._reconnect))

    async def cancel(self, job_or_run_id: str, wait: bool = False, timeout: float = 30.0) -> list[str]:
        return await self._run(ops.cancel(job_or_run_id, wait, timeout))

    async def get_result(self, job_id: str) -> Any:
        text = await self._run(ops.get_result(job_id, self._reconnect))
        return None if text is None else json.loads(text)

    async def get_run(self, run_id: str) -> RunRecord:
        return await self._run(ops.get_run(run_id, self._reconnect))

    async def wait_run(self, run_id: str, timeout: float | None = None) -> RunRecord:
        return await self._run(ops.wait_run(run_id, timeout, self._reconnect))

    async def list_runs(self, limit: int = 0, agent_run_id: str | None = None) -> list[RunRecord]:
        return await self._run(ops.list_runs(limit, agent_run_id or "", self._reconnect))

    async def list_workers(self) -> list[WorkerRecord]:
        return await self._run(ops.list_workers(self._reconnect))

    async def add_jobs(
        self, run_id: str, jobs: Sequence[TitanJob], base_dir: str | Path | None = None
    ) -> list[str]:
        return await self._run(ops.add_jobs(run_id, list(jobs), _path(base_dir), self._uploads))

    async def add_iteration(
        self, run_id: str, jobs: Sequence[str], after: str, max_iterations: int = 10
    ) -> list[str]:
        return await self._run(ops.add_iteration(run_id, list(jobs), after, max_iterations))

    async def approve(
        self, run_id: str, job_id: str | None = None, comment: str = "", by: str | None = None
    ) -> JobRecord:
        return await self._run(ops.decide_gate(_ref(run_id, job_id), True, comment, by or _user()))

    async def reject(
        self, run_id: str, job_id: str | None = None, comment: str = "", by: str | None = None
    ) -> JobRecord:
        return await self._run(ops.decide_gate(_ref(run_id, job_id), False, comment, by or _user()))

    async def list_approvals(self) -> list[JobRecord]:
        return await self._run(ops.list_approvals())

    async def list_agent_runs(self) -> list[AgentRunRecord]:
        return await self._run(ops.list_agent_runs())

    async def save_dag(
        self,
        name: str,
        jobs: Sequence[TitanJob],
        *,
        base_dir: str | Path | None = None,
        labels: dict[str, str] | None = None,
    ) -> str:
        return await self._run(ops.save_dag(name, list(jobs), _path(base_dir), self._uploads, labels))

    async def submit_saved_dag(
        self, name: str, wait: bool = False, timeout: float | None = None, run_id: str | None = None
    ) -> AsyncRun:
        response = await self._run(ops.submit_saved_dag(name, run_id or ""))
        run = AsyncRun(response.run_id, self)
        if wait:
            await run.wait(timeout)
        return run

    async def save_yaml(self, name: str, path: str | Path) -> str:
        pipeline = load_pipeline(path)
        return await self.save_dag(name, pipeline.jobs, base_dir=pipeline.path.parent, labels=pipeline.labels)

    async def list_saved_dags(self) -> list[str]:
        return await self._run(ops.list_saved_dags())

    async def delete_saved_dag(self, name: str) -> None:
        await self._run(ops.named_call("DeleteSavedDag", pb.SavedDagRef(name=name)))

    async def delete_schedule(self, name: str) -> None:
        await self._run(ops.named_call("DeleteSchedule", pb.ScheduleRef(name=name)))

    async def get_agent_run(self, agent_run_id: str) -> AgentRunRecord:
        for agent_run in await self.list_agent_runs():
            if agent_run.id == agent_run_id:
                return agent_run
        raise JobNotFound(f"no agent run {agent_run_id!r}: list them with `titan-runtime agent-runs`")

    async def add_schedule(self, name: str, dag: str, cron: str, catch_up: bool = False) -> ScheduleRecord:
        return await self._run(ops.add_schedule(name, dag, cron, catch_up))

    async def list_schedules(self) -> list[ScheduleRecord]:
        return await self._run(ops.list_schedules())

    async def list_services(
        self, service_id: str | None = None, include_ended: bool = False
    ) -> list[ServiceRecord]:
        return await self._run(ops.list_services(service_id or "", include_ended))

    async def stop_service(self, service_id: str) -> list[str]:
        return await self._run(ops.service_action("StopService", service_id))

    async def restart_service(self, service_id: str) -> list[str]:
        return await self._run(ops.service_action("RestartService", service_id))

    async def service_endpoint(self, service_id: str, all: bool = False) -> str | list[str]:
        return await self._run(ops.service_endpoint(service_id, all))

    async def drain_worker(self, worker: str, deadline: float = 0.0) -> WorkerRecord:
        return await self._run(ops.drain_worker(worker, deadline))

    async def autoscaler_status(self) -> AutoscalerStatusRecord:
        return await self._run(autoscaler.autoscaler_status())

    async def audit(self, since: float = 0.0, limit: int = 0) -> list[AuditRecord]:
        """The audit log's latest entries at or after `since` (oldest first; an admin or read token)."""
        return await self._run(audit.audit(since, limit))

    async def create_token(
        self,
        role: str,
        name: str = "",
        expires_in: float = 0.0,
        pool: str = "",
        tags: list[str] | None = None,
    ) -> tuple[str, TokenRecord]:
        """Make a named token with a role (admin, submit, read, worker): (the token, shown this
        once; its record). `expires_in` seconds (0: never); `pool`/`tags` bind a worker token."""
        return await self._run(tokens.create_token(role, name, expires_in, pool, tags))

    async def list_tokens(self) -> list[TokenRecord]:
        """The named tokens' records (never the tokens)."""
        return await self._run(tokens.list_tokens())

    async def revoke_token(self, name: str) -> TokenRecord:
        """Revoke a named token: it admits nothing from now on, and its workers are disconnected."""
        return await self._run(tokens.revoke_token(name))

    async def set_secret(self, name: str, value: str | bytes) -> None:
        """Set (or replace) secret `name`: encrypted on the master, given to the jobs that name it
        in `secrets` in their environment only. The cluster token only."""
        await self._run(secrets.set_secret(name, value))

    async def list_secrets(self) -> list[SecretRecord]:
        """The secrets' names and when each was last set (never a value; the cluster token only)."""
        return await self._run(secrets.list_secrets())

    async def delete_secret(self, name: str) -> None:
        """Delete secret `name` (JobNotFound, a LookupError, when there is none; the cluster token only)."""
        await self._run(secrets.delete_secret(name))

    async def autoscaler_events(self, limit: int = 0, pool: str = "") -> list[ScaleEventRecord]:
        return await self._run(autoscaler.autoscaler_events(limit, pool))

    async def follow_logs(
        self, job_id: str, offset: int = 0, attempt: int | None = None
    ) -> AsyncIterator[LogLine]:
        follow = ops.LogFollow(job_id, offset, attempt, self._reconnect)
        while True:
            try:
                async for chunk in self._stream("ReadLogs", follow.request()):
                    for line in follow.lines(chunk):
                        yield line
                break
            except TitanConnectionError as exc:
                error = exc
            await asyncio.sleep(follow.retry_in(error))
        for line in follow.end():
            yield line

    async def read_logs(self, job_id: str, attempt: int | None = None, offset: int = 0) -> list[LogLine]:
        request = pb.ReadLogsRequest(ref=job_id, attempt=attempt or 0, offset=offset, follow=False)
        reader = LogReader()
        lines = [line async for chunk in self._stream("ReadLogs", request) for line in reader.feed(chunk)]
        return lines + reader.end()

    async def fetch_logs(self, job_id: str, attempt: int | None = None) -> str:
        return "".join(
            line + "\n" if line.terminated else line for line in await self.read_logs(job_id, attempt)
        )

    async def fetch_log_bytes(self, job_id: str, attempt: int | None = None) -> bytes:
        return b"".join(line.raw for line in await self.read_logs(job_id, attempt) if not line.titan)

    async def upload_file(self, path: str | Path) -> str:
        return await self._run(ops.upload(Path(path).resolve(), self._uploads))

    async def upload_project_folder(self, folder: str | Path) -> str:
        return await self._run(ops.upload_project(Path(folder), self._uploads))

    async def publish_artifact(self, name: str, path: str | Path, run_id: str | None = None) -> str:
        return await self._run(ops.publish_artifact(name, Path(path), run_id or "", self._uploads))

    async def get_artifact(
        self, name: str, save_path: str | Path | None = None, run_id: str | None = None
    ) -> Path:
        found = await self._run(ops.resolve_artifact(name, run_id or ""))
        return await self.download(found.hash, save_path or Path(name).name)

    fetch_artifact = get_artifact

    async def download(self, artifact_hash: str, dest: str | Path) -> Path:
        writer = ArtifactWriter(Path(dest), artifact_hash)
        try:
            async for chunk in self._stream("GetArtifact", pb.ArtifactRef(hash=artifact_hash)):
                writer.write(chunk.data)
        except BaseException:
            writer.abort()
            raise
        return writer.finish()

    async def store_put(self, key: str, value: Any) -> None:
        await self._run(ops.kv("put", key, ops.as_text(value)))

    async def store_get(self, key: str) -> str | None:
        response = await self._run(ops.kv("get", key))
        return response.value if response.found else None

    async def store_delete(self, key: str) -> bool:
        return (await self._run(ops.kv("delete", key))).changed

    async def store_incr(self, key: str, amount: int = 1) -> int:
        return await self._run(ops.kv_incr(key, amount))

    async def store_cas(self, key: str, expected: Any, value: Any) -> bool:
        exp = None if expected is None else ops.as_text(expected)
        return (await self._run(ops.kv("cas", key, ops.as_text(value), expected=exp))).changed

    async def store_sadd(self, key: str, member: Any) -> bool:
        return (await self._run(ops.kv("sadd", key, ops.as_text(member, "member")))).changed

    async def store_srem(self, key: str, member: Any) -> bool:
        return (await self._run(ops.kv("srem", key, ops.as_text(member, "member")))).changed

    async def store_smembers(self, key: str) -> set[str]:
        return set((await self._run(ops.kv("smembers", key))).members)


def _path(value: str | Path | None) -> Path | None:
    return Path(value) if value is not None else None
