"""`TitanClient`: the blocking Python SDK."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
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
    RunRecord,
    ScheduleRecord,
    ServiceRecord,
    WorkerRecord,
    read_lines,
)
from titan_runtime.client.run import Run
from titan_runtime.client.secrets import SecretRecord
from titan_runtime.client.tokens import TokenRecord
from titan_runtime.client.transfer import ArtifactWriter
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.proto import titan_pb2_grpc as rpc
from titan_runtime.tls import channel, client_tls

T = TypeVar("T")

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # A restarted master is reachable again within a second, not after gRPC's default backoff (1 s to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class TitanClient:
    """Talks to a Titan master. Address and token follow the usual resolution order
    (argument, TITAN_ADDRESS / TITAN_HOST+TITAN_PORT, TITAN_TOKEN, the data dir's token file).

    Every method raises on failure (`TitanConnectionError`, `JobNotFound`, `InvalidJob`,
    `Unauthenticated`, ...); none returns an error status string.

    TLS: with the cluster's CA (`tls_ca`, else TITAN_TLS_CA), and a client certificate
    (`tls_cert`, `tls_key`; TITAN_TLS_CERT, TITAN_TLS_KEY) for a master that requires one.

    Once it has reached the master, the client rides out a restart: reads and waits (`wait`,
    `wait_run`, `follow_logs`, `get_job`, ...) try again for up to `reconnect_timeout` seconds
    (else TITAN_RECONNECT_TIMEOUT, else 60; 0 turns it off). Calls that must not happen twice
    (a submission without a run id, KV writes, cancel) fail at once as before.
    """

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
        self._channel = channel(self.address, self.tls, CHANNEL_OPTIONS)
        self._stub = rpc.TitanStub(self._channel)
        self._uploads = ops.UploadCache()

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> TitanClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ driver

    def _run(self, op: ops.Op[T]) -> T:
        """Carry out an operation's instructions; a lost connection is thrown into it to decide."""
        try:
            step = next(op)
            while True:
                if isinstance(step, ops.Sleep):
                    time.sleep(step.seconds)
                    step = op.send(None)
                    continue
                try:
                    response = self._invoke(step)
                except TitanConnectionError as exc:
                    error = exc
                else:
                    step = op.send(response)
                    continue
                step = op.throw(error)
        except StopIteration as stop:
            return stop.value

    def _invoke(self, call: ops.Call) -> Any:
        try:
            response = getattr(self._stub, call.method)(
                call.request, metadata=self._metadata, timeout=call.timeout
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.address) from None
        self._reconnect.answered()
        return response

    def _stream(self, method: str, request: Any) -> Iterator[Any]:
        try:
            yield from getattr(self._stub, method)(request, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self.address) from None

    # ------------------------------------------------------------------ jobs

    def submit_job(self, job: TitanJob, run_id: str | None = None, base_dir: str | Path | None = None) -> str:
        """Submit one job (a run of one job) and return its id, which every job call accepts."""
        response = self._run(
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

    def submit_dag(
        self,
        name: str,
        jobs: Sequence[TitanJob],
        agent_run_id: str | None = None,
        *,
        run_id: str | None = None,
        labels: dict[str, str] | None = None,
        base_dir: str | Path | None = None,
    ) -> Run:
        """Submit jobs as one run (a DAG through their parents); returns a `Run` (its id, and calls)."""
        response = self._run(
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
        return Run(response.run_id, self)

    def submit_yaml(
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
    ) -> Run:
        """Check a YAML pipeline whole, submit it as one run, and (with wait=True) return once it has
        ended, failed or not. `poll_interval` is accepted for the original SDK and not needed."""
        pipeline = load_pipeline(path)
        run = self.submit_dag(
            name or pipeline.name,
            pipeline.jobs,
            agent_run_id,
            run_id=run_id,
            labels={**pipeline.labels, **(labels or {})},
            base_dir=pipeline.path.parent,
        )
        if wait:
            run.wait(timeout)
        return run

    def get_job(self, job_id: str) -> JobRecord:
        """The full record of a job: state, reason, attempts, exit code, worker."""
        return self._run(ops.get_job(job_id, self._reconnect))

    def get_job_status(self, job_id: str) -> str:
        """The job's state word (SUCCEEDED, FAILED, RUNNING, ...)."""
        return self.get_job(job_id).state

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Block until the job has ended (whatever the outcome); TimeoutError after `timeout` seconds."""
        return self._run(ops.wait_job(job_id, timeout, self._reconnect))

    def cancel(self, job_or_run_id: str, wait: bool = False, timeout: float = 30.0) -> list[str]:
        """Cancel a job (and its descendants) or a whole run; with wait=True, return once its processes are gone."""
        return self._run(ops.cancel(job_or_run_id, wait, timeout))

    def get_result(self, job_id: str) -> Any:
        """The job's result (what it passed to task.set_result), or None."""
        text = self._run(ops.get_result(job_id, self._reconnect))
        return None if text is None else json.loads(text)

    def get_run(self, run_id: str) -> RunRecord:
        return self._run(ops.get_run(run_id, self._reconnect))

    def wait_run(self, run_id: str, timeout: float | None = None) -> RunRecord:
        return self._run(ops.wait_run(run_id, timeout, self._reconnect))

    def list_runs(self, limit: int = 0, agent_run_id: str | None = None) -> list[RunRecord]:
        return self._run(ops.list_runs(limit, agent_run_id or "", self._reconnect))

    def list_workers(self) -> list[WorkerRecord]:
        return self._run(ops.list_workers(self._reconnect))

    # ------------------------------------------------------------------ dynamic DAGs

    def add_jobs(
        self, run_id: str, jobs: Sequence[TitanJob], base_dir: str | Path | None = None
    ) -> list[str]:
        """Add jobs to a running run; they may depend on any of its jobs. Returns their ids."""
        return self._run(ops.add_jobs(run_id, list(jobs), _path(base_dir), self._uploads))

    def add_iteration(
        self, run_id: str, jobs: Sequence[str], after: str, max_iterations: int = 10
    ) -> list[str]:
        """Enqueue the next iteration (JOB@N) of a sub-graph, to start after `after`; refused past max_iterations."""
        return self._run(ops.add_iteration(run_id, list(jobs), after, max_iterations))

    def approve(
        self, run_id: str, job_id: str | None = None, comment: str = "", by: str | None = None
    ) -> JobRecord:
        """Approve the gate after RUN/JOB (a gate must be open: the job has succeeded and waits)."""
        return self._run(ops.decide_gate(_ref(run_id, job_id), True, comment, by or _user()))

    def reject(
        self, run_id: str, job_id: str | None = None, comment: str = "", by: str | None = None
    ) -> JobRecord:
        """Reject the gate after RUN/JOB: the job fails and its dependents do not run."""
        return self._run(ops.decide_gate(_ref(run_id, job_id), False, comment, by or _user()))

    def list_approvals(self) -> list[JobRecord]:
        """Open gates first, then decided ones (with who decided, when, and the comment)."""
        return self._run(ops.list_approvals())

    def list_agent_runs(self) -> list[AgentRunRecord]:
        return self._run(ops.list_agent_runs())

    def get_agent_run(self, agent_run_id: str) -> AgentRunRecord:
        for agent_run in self.list_agent_runs():
            if agent_run.id == agent_run_id:
                return agent_run
        raise JobNotFound(f"no agent run {agent_run_id!r}: list them with `titan-runtime agent-runs`")

    def save_dag(
        self,
        name: str,
        jobs: Sequence[TitanJob],
        *,
        base_dir: str | Path | None = None,
        labels: dict[str, str] | None = None,
    ) -> str:
        """Keep a DAG on the master under a name (its scripts uploaded) to submit or schedule later."""
        return self._run(ops.save_dag(name, list(jobs), _path(base_dir), self._uploads, labels))

    def save_yaml(self, name: str, path: str | Path) -> str:
        pipeline = load_pipeline(path)
        return self.save_dag(name, pipeline.jobs, base_dir=pipeline.path.parent, labels=pipeline.labels)

    def submit_saved_dag(
        self, name: str, wait: bool = False, timeout: float | None = None, run_id: str | None = None
    ) -> Run:
        response = self._run(ops.submit_saved_dag(name, run_id or ""))
        run = Run(response.run_id, self)
        if wait:
            run.wait(timeout)
        return run

    def list_saved_dags(self) -> list[str]:
        return self._run(ops.list_saved_dags())

    def delete_saved_dag(self, name: str) -> None:
        self._run(ops.named_call("DeleteSavedDag", pb.SavedDagRef(name=name)))

    def add_schedule(self, name: str, dag: str, cron: str, catch_up: bool = False) -> ScheduleRecord:
        """Run the saved DAG `dag` on a cron expression (UTC). After downtime, missed times are skipped,
        or with catch_up=True the latest one runs once."""
        return self._run(ops.add_schedule(name, dag, cron, catch_up))

    def list_schedules(self) -> list[ScheduleRecord]:
        return self._run(ops.list_schedules())

    def delete_schedule(self, name: str) -> None:
        self._run(ops.named_call("DeleteSchedule", pb.ScheduleRef(name=name)))

    # ------------------------------------------------------------------ services

    def list_services(
        self, service_id: str | None = None, include_ended: bool = False
    ) -> list[ServiceRecord]:
        """Service instances (all services, or one), with worker, endpoint, state and restarts."""
        return self._run(ops.list_services(service_id or "", include_ended))

    def stop_service(self, service_id: str) -> list[str]:
        """Stop a service for good (every instance, whole process trees); it is not restarted."""
        return self._run(ops.service_action("StopService", service_id))

    def restart_service(self, service_id: str) -> list[str]:
        """Restart every instance of a service now (not counted as a crash)."""
        return self._run(ops.service_action("RestartService", service_id))

    def service_endpoint(self, service_id: str, all: bool = False) -> str | list[str]:
        """ "host:port" of the service's healthy instance (with all=True, every healthy replica)."""
        return self._run(ops.service_endpoint(service_id, all))

    def drain_worker(self, worker: str, deadline: float = 0.0) -> WorkerRecord:
        """Ask a worker (name or id) to take no new work, finish what it runs, and exit."""
        return self._run(ops.drain_worker(worker, deadline))

    def autoscaler_status(self) -> AutoscalerStatusRecord:
        """The autoscaled pools: sizes, what they wait for, why they cannot grow."""
        return self._run(autoscaler.autoscaler_status())

    def audit(self, since: float = 0.0, limit: int = 0) -> list[AuditRecord]:
        """The audit log's latest entries at or after `since` (oldest first; an admin or read token)."""
        return self._run(audit.audit(since, limit))

    def create_token(
        self,
        role: str,
        name: str = "",
        expires_in: float = 0.0,
        pool: str = "",
        tags: list[str] | None = None,
    ) -> tuple[str, TokenRecord]:
        """Make a named token with a role (admin, submit, read, worker): (the token, shown this
        once; its record). `expires_in` seconds (0: never); `pool`/`tags` bind a worker token."""
        return self._run(tokens.create_token(role, name, expires_in, pool, tags))

    def list_tokens(self) -> list[TokenRecord]:
        """The named tokens' records (never the tokens)."""
        return self._run(tokens.list_tokens())

    def revoke_token(self, name: str) -> TokenRecord:
        """Revoke a named token: it admits nothing from now on, and its workers are disconnected."""
        return self._run(tokens.revoke_token(name))

    def set_secret(self, name: str, value: str | bytes) -> None:
        """Set (or replace) secret `name`: encrypted on the master, given to the jobs that name it
        in `secrets` in their environment only. The cluster token only."""
        self._run(secrets.set_secret(name, value))

    def list_secrets(self) -> list[SecretRecord]:
        """The secrets' names and when each was last set (never a value; the cluster token only)."""
        return self._run(secrets.list_secrets())

    def delete_secret(self, name: str) -> None:
        """Delete secret `name` (JobNotFound, a LookupError, when there is none; the cluster token only)."""
        self._run(secrets.delete_secret(name))

    def autoscaler_events(self, limit: int = 0, pool: str = "") -> list[ScaleEventRecord]:
        """The autoscaler's latest decisions, oldest first, each with its reason."""
        return self._run(autoscaler.autoscaler_events(limit, pool))

    # ------------------------------------------------------------------ logs

    def follow_logs(self, job_id: str, offset: int = 0, attempt: int | None = None) -> Iterator[LogLine]:
        """Yield the job's output lines as they are printed, from byte `offset`, until the job ends.

        Without `attempt`, follows the latest attempt and then any retry after it. A master restart
        does not end it: it resumes after the last line it yielded (see `reconnect_timeout`).
        """
        follow = ops.LogFollow(job_id, offset, attempt, self._reconnect)
        while True:
            try:
                for chunk in self._stream("ReadLogs", follow.request()):
                    yield from follow.lines(chunk)
                break
            except TitanConnectionError as exc:
                error = exc
            time.sleep(follow.retry_in(error))
        yield from follow.end()

    def read_logs(self, job_id: str, attempt: int | None = None, offset: int = 0) -> list[LogLine]:
        """Every line logged so far by one attempt (default: the latest)."""
        request = pb.ReadLogsRequest(ref=job_id, attempt=attempt or 0, offset=offset, follow=False)
        return list(read_lines(self._stream("ReadLogs", request)))

    def fetch_logs(self, job_id: str, attempt: int | None = None) -> str:
        """The whole output of one attempt (default: the latest) as text, never truncated (bytes that
        are not UTF-8 read as U+FFFD: `fetch_log_bytes` has them exactly)."""
        return "".join(line + "\n" if line.terminated else line for line in self.read_logs(job_id, attempt))

    def fetch_log_bytes(self, job_id: str, attempt: int | None = None) -> bytes:
        """The exact bytes one attempt wrote (stdout and stderr, line by line as they came),
        without Titan's own notes."""
        return b"".join(line.raw for line in self.read_logs(job_id, attempt) if not line.titan)

    # ------------------------------------------------------------------ artifacts

    def upload_file(self, path: str | Path) -> str:
        """Upload a file's content (once) and return its content hash."""
        return self._run(ops.upload(Path(path).resolve(), self._uploads))

    def upload_project_folder(self, folder: str | Path) -> str:
        """Upload a folder as a project archive (once per content) and return its hash."""
        return self._run(ops.upload_project(Path(folder), self._uploads))

    def publish_artifact(self, name: str, path: str | Path, run_id: str | None = None) -> str:
        """Upload a file under a name (the cluster's namespace, or a run's); returns its hash."""
        return self._run(ops.publish_artifact(name, Path(path), run_id or "", self._uploads))

    def get_artifact(self, name: str, save_path: str | Path | None = None, run_id: str | None = None) -> Path:
        """Download a named artifact to `save_path` (default: its name in the current directory)."""
        found = self._run(ops.resolve_artifact(name, run_id or ""))
        return self.download(found.hash, save_path or Path(name).name)

    fetch_artifact = get_artifact

    def download(self, artifact_hash: str, dest: str | Path) -> Path:
        """Write the artifact with this content hash to `dest`, checking what arrives."""
        target = Path(dest)
        writer = ArtifactWriter(target, artifact_hash)
        try:
            for chunk in self._stream("GetArtifact", pb.ArtifactRef(hash=artifact_hash)):
                writer.write(chunk.data)
        except BaseException:
            writer.abort()
            raise
        return writer.finish()

    # ------------------------------------------------------------------ KV

    def store_put(self, key: str, value: Any) -> None:
        self._run(ops.kv("put", key, ops.as_text(value)))

    def store_get(self, key: str) -> str | None:
        response = self._run(ops.kv("get", key))
        return response.value if response.found else None

    def store_delete(self, key: str) -> bool:
        return self._run(ops.kv("delete", key)).changed

    def store_incr(self, key: str, amount: int = 1) -> int:
        return self._run(ops.kv_incr(key, amount))

    def store_cas(self, key: str, expected: Any, value: Any) -> bool:
        """Set `key` to `value` only if it holds `expected` (None: only if absent). True if it was set."""
        exp = None if expected is None else ops.as_text(expected)
        return self._run(ops.kv("cas", key, ops.as_text(value), expected=exp)).changed

    def store_sadd(self, key: str, member: Any) -> bool:
        """Add to a set; True if the member was new (== 1 for code written for the original)."""
        return self._run(ops.kv("sadd", key, ops.as_text(member, "member"))).changed

    def store_srem(self, key: str, member: Any) -> bool:
        return self._run(ops.kv("srem", key, ops.as_text(member, "member"))).changed

    def store_smembers(self, key: str) -> set[str]:
        return set(self._run(ops.kv("smembers", key)).members)


def _path(value: str | Path | None) -> Path | None:
    return Path(value) if value is not None else None


def _ref(run_id: str, job_id: str | None) -> str:
    return f"{run_id}/{job_id}" if job_id else run_id


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
