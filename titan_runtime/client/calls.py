"""Every call of the SDK, written once for `TitanClient` and `AsyncTitanClient`.

Each method is an operation (see client/drivers.py): on the blocking client it returns its result,
on the asyncio client an awaitable of it. Only what is itself an iterator (`follow_logs`) is
written per client.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from titan_runtime.client import audit as audit_ops
from titan_runtime.client import autoscaler, ops, retention, secrets, tokens
from titan_runtime.client.audit import AuditRecord
from titan_runtime.client.autoscaler import AutoscalerStatusRecord, ScaleEventRecord
from titan_runtime.client.drivers import operation
from titan_runtime.client.errors import JobNotFound
from titan_runtime.client.instructions import Op
from titan_runtime.client.job import TitanJob
from titan_runtime.client.reconnect import Reconnect
from titan_runtime.client.records import (
    AgentRunRecord,
    ArtifactRecord,
    JobRecord,
    LogLine,
    RunRecord,
    ScheduleRecord,
    ServiceRecord,
    StatusWord,
    WorkerRecord,
)
from titan_runtime.client.retention import GcReportRecord
from titan_runtime.client.secrets import SecretRecord
from titan_runtime.client.tokens import IdentityRecord, TokenRecord
from titan_runtime.proto import titan_pb2 as pb

#: The handle a submission returns: `Run` on the blocking client, `AsyncRun` on the asyncio one.
R = TypeVar("R", bound=str)


class Calls(Generic[R]):
    _reconnect: Reconnect
    _uploads: ops.UploadCache
    _handle: Callable[[str], R]

    # ------------------------------------------------------------------ jobs and runs

    @operation
    def submit_job(
        self, job: TitanJob, run_id: str | None = None, base_dir: str | Path | None = None
    ) -> Op[str]:
        """Submit one job (a run of one job) and return its id, which every job call accepts."""
        response = yield from self._submit([job], job.id, run_id, None, None, base_dir)
        return response.run_id

    @operation
    def submit_dag(
        self,
        name: str,
        jobs: Sequence[TitanJob],
        agent_run_id: str | None = None,
        *,
        run_id: str | None = None,
        labels: dict[str, str] | None = None,
        base_dir: str | Path | None = None,
    ) -> Op[R]:
        """Submit jobs as one run (a DAG through their parents); returns a `Run` (its id, and calls)."""
        response = yield from self._submit(list(jobs), name, run_id, labels, agent_run_id, base_dir)
        return self._handle(response.run_id)

    @operation
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
    ) -> Op[R]:
        """Check a YAML pipeline whole, submit it as one run, and (with wait=True) return once it has
        ended, failed or not. `poll_interval` is accepted for the original SDK and not needed."""
        pipeline = _load_pipeline(path)
        labels = {**pipeline.labels, **(labels or {})}
        response = yield from self._submit(
            pipeline.jobs, name or pipeline.name, run_id, labels, agent_run_id, pipeline.path.parent
        )
        if wait:
            yield from ops.wait_run(response.run_id, timeout, self._reconnect)
        return self._handle(response.run_id)

    def _submit(
        self,
        jobs: list[TitanJob],
        name: str,
        run_id: str | None,
        labels: dict[str, str] | None,
        agent_run_id: str | None,
        base_dir: str | Path | None,
    ) -> Op[pb.SubmitRunResponse]:
        return ops.submit_run(
            jobs,
            name=name,
            run_id=run_id or "",
            labels=labels,
            agent_run_id=agent_run_id or "",
            base_dir=_path(base_dir),
            uploads=self._uploads,
            reconnect=self._reconnect,
        )

    @operation
    def get_job(self, job_id: str) -> Op[JobRecord]:
        """The full record of a job: state, reason, attempts, exit code, worker."""
        return (yield from ops.get_job(job_id, self._reconnect))

    @operation
    def get_job_status(self, job_id: str) -> Op[StatusWord]:
        """The job's state word (SUCCEEDED, FAILED, RUNNING, ...); SUCCEEDED also equals the
        original Titan's "COMPLETED"."""
        return StatusWord((yield from ops.get_job(job_id, self._reconnect)).state)

    @operation
    def wait(self, job_id: str, timeout: float | None = None) -> Op[JobRecord]:
        """Block until the job has ended (whatever the outcome); TitanTimeoutError (a TimeoutError)
        after `timeout` seconds."""
        return (yield from ops.wait_job(job_id, timeout, self._reconnect))

    @operation
    def cancel(
        self, job_or_run_id: str, wait: bool = False, timeout: float = 30.0, reason: str = ""
    ) -> Op[list[str]]:
        """Cancel a job (and its descendants) or a whole run; with wait=True, return once its processes
        are gone. `reason` (at most 500 characters) is what the jobs' reason says, "cancelled by user"
        when not given."""
        return (yield from ops.cancel(job_or_run_id, wait, timeout, reason))

    @operation
    def get_result(self, job_id: str) -> Op[Any]:
        """The job's result (what it passed to task.set_result), or None."""
        return (yield from ops.get_result(job_id, self._reconnect))

    @operation
    def get_run(self, run_id: str, *, jobs: Sequence[str] | None = None, limit: int = 0) -> Op[RunRecord]:
        """The run and its jobs; with `jobs` (states, e.g. ["RUNNING", "FAILED"]) only the jobs in
        those states, at most `limit` (0: all). `counts` always covers every job."""
        return (yield from ops.get_run(run_id, self._reconnect, jobs, limit))

    @operation
    def wait_run(self, run_id: str, timeout: float | None = None) -> Op[RunRecord]:
        """Block until the run has ended, whatever the outcome; TitanTimeoutError (a TimeoutError)
        after `timeout` seconds."""
        return (yield from ops.wait_run(run_id, timeout, self._reconnect))

    @operation
    def list_runs(
        self,
        limit: int = 0,
        agent_run_id: str | None = None,
        *,
        states: Sequence[str] = (),
        name: str | None = None,
        labels: dict[str, str] | None = None,
        since: float = 0.0,
        before_seq: int = 0,
    ) -> Op[list[RunRecord]]:
        """Runs, newest first (without their jobs): at most `limit` (0: the latest 1,000), only
        those in one of `states`, whose name matches the shell pattern `name`, with every one of
        `labels`, created at or after `since` (seconds since the epoch), and submitted before the
        run whose `seq` is `before_seq` (0: from the latest). The next page of a listing is
        `before_seq=page[-1].seq`."""
        return (
            yield from ops.list_runs(
                limit, agent_run_id or "", self._reconnect, states, name or "", labels, since, before_seq
            )
        )

    @operation
    def list_artifacts(self, run_id: str = "", limit: int = 0) -> Op[list[ArtifactRecord]]:
        """The named artifacts of run `run_id` (what its jobs published), or the cluster-wide ones,
        by name: at most `limit` (0: the first 1,000)."""
        return (yield from ops.list_artifacts(run_id, limit))

    @operation
    def list_workers(self) -> Op[list[WorkerRecord]]:
        return (yield from ops.list_workers(self._reconnect))

    @operation
    def _submit_functions(
        self, specs: Sequence[pb.JobSpec], run_id: str, name: str, labels: dict[str, str], open_for: float
    ) -> Op[str]:
        return (yield from ops.submit_functions(specs, run_id, name, labels, open_for))

    # ------------------------------------------------------------------ dynamic DAGs

    @operation
    def add_jobs(
        self, run_id: str, jobs: Sequence[TitanJob], base_dir: str | Path | None = None
    ) -> Op[list[str]]:
        """Add jobs to a running run; they may depend on any of its jobs. Returns their ids."""
        return (yield from ops.add_jobs(run_id, list(jobs), _path(base_dir), self._uploads))

    @operation
    def add_iteration(
        self, run_id: str, jobs: Sequence[str | TitanJob], after: str | TitanJob, max_iterations: int = 10
    ) -> Op[list[str]]:
        """Enqueue the next iteration (JOB@N) of a sub-graph, to start after `after`; refused past max_iterations."""
        return (yield from ops.add_iteration(run_id, list(jobs), after, max_iterations))

    @operation
    def approve(
        self, run_id: str, job_id: str | None = None, comment: str = "", by: str | None = None
    ) -> Op[JobRecord]:
        """Approve the gate after RUN/JOB (a gate must be open: the job has succeeded and waits)."""
        return (yield from ops.decide_gate(_ref(run_id, job_id), True, comment, by or _user()))

    @operation
    def reject(
        self, run_id: str, job_id: str | None = None, comment: str = "", by: str | None = None
    ) -> Op[JobRecord]:
        """Reject the gate after RUN/JOB: the job fails and its dependents do not run."""
        return (yield from ops.decide_gate(_ref(run_id, job_id), False, comment, by or _user()))

    @operation
    def list_approvals(self) -> Op[list[JobRecord]]:
        """Open gates first, then decided ones (with who decided, when, and the comment)."""
        return (yield from ops.list_approvals())

    @operation
    def list_agent_runs(self) -> Op[list[AgentRunRecord]]:
        return (yield from ops.list_agent_runs())

    @operation
    def get_agent_run(self, agent_run_id: str) -> Op[AgentRunRecord]:
        for agent_run in (yield from ops.list_agent_runs()):
            if agent_run.id == agent_run_id:
                return agent_run
        raise JobNotFound(f"no agent run {agent_run_id!r}: list them with `titan-runtime agent-runs`")

    # ------------------------------------------------------------------ saved DAGs and schedules

    @operation
    def save_dag(
        self,
        name: str,
        jobs: Sequence[TitanJob],
        *,
        base_dir: str | Path | None = None,
        labels: dict[str, str] | None = None,
    ) -> Op[str]:
        """Keep a DAG on the master under a name (its scripts uploaded) to submit or schedule later."""
        return (yield from ops.save_dag(name, list(jobs), _path(base_dir), self._uploads, labels))

    @operation
    def save_yaml(self, name: str, path: str | Path) -> Op[str]:
        pipeline = _load_pipeline(path)
        base_dir = pipeline.path.parent
        return (yield from ops.save_dag(name, pipeline.jobs, base_dir, self._uploads, pipeline.labels))

    @operation
    def submit_saved_dag(
        self, name: str, wait: bool = False, timeout: float | None = None, run_id: str | None = None
    ) -> Op[R]:
        response = yield from ops.submit_saved_dag(name, run_id or "")
        if wait:
            yield from ops.wait_run(response.run_id, timeout, self._reconnect)
        return self._handle(response.run_id)

    @operation
    def get_saved_dag(self, name: str) -> Op[dict[str, Any]]:
        """A saved DAG: its name, `saved_at`, and the run it submits (`jobs`, `labels`, ...) as a
        dict; JobNotFound when there is none."""
        return (yield from ops.get_saved_dag(name))

    @operation
    def list_saved_dags(self) -> Op[list[str]]:
        return (yield from ops.list_saved_dags())

    @operation
    def delete_saved_dag(self, name: str) -> Op[None]:
        yield from ops.named_call("DeleteSavedDag", pb.SavedDagRef(name=name))

    @operation
    def add_schedule(
        self, name: str, dag: str, cron: str, catch_up: bool = False, seconds: bool = False
    ) -> Op[ScheduleRecord]:
        """Run the saved DAG `dag` on a cron expression (UTC): five fields, or with seconds=True six,
        the seconds last. After downtime, missed times are skipped, or with catch_up=True the latest
        one runs once."""
        return (yield from ops.add_schedule(name, dag, cron, catch_up, seconds))

    @operation
    def list_schedules(self) -> Op[list[ScheduleRecord]]:
        return (yield from ops.list_schedules())

    @operation
    def delete_schedule(self, name: str) -> Op[None]:
        yield from ops.named_call("DeleteSchedule", pb.ScheduleRef(name=name))

    # ------------------------------------------------------------------ services and workers

    @operation
    def list_services(
        self, service_id: str | None = None, include_ended: bool = False
    ) -> Op[list[ServiceRecord]]:
        """Service instances (all services, or one), with worker, endpoint, state and restarts."""
        return (yield from ops.list_services(service_id or "", include_ended))

    @operation
    def stop_service(self, service_id: str) -> Op[list[str]]:
        """Stop a service for good (every instance, whole process trees); it is not restarted."""
        return (yield from ops.service_action("StopService", service_id))

    @operation
    def restart_service(self, service_id: str) -> Op[list[str]]:
        """Restart every instance of a service now (not counted as a crash)."""
        return (yield from ops.service_action("RestartService", service_id))

    @operation
    def service_endpoint(self, service_id: str, all: bool = False) -> Op[str | list[str]]:
        """ "host:port" of the service's healthy instance (with all=True, every healthy replica)."""
        return (yield from ops.service_endpoint(service_id, all))

    @operation
    def drain_worker(self, worker: str, deadline: float = 0.0) -> Op[WorkerRecord]:
        """Ask a worker (name or id) to take no new work, finish what it runs, and exit."""
        return (yield from ops.drain_worker(worker, deadline))

    @operation
    def autoscaler_status(self) -> Op[AutoscalerStatusRecord]:
        """The autoscaled pools: sizes, what they wait for, why they cannot grow."""
        return (yield from autoscaler.autoscaler_status())

    @operation
    def autoscaler_events(self, limit: int = 0, pool: str = "") -> Op[list[ScaleEventRecord]]:
        """The autoscaler's latest decisions, oldest first, each with its reason."""
        return (yield from autoscaler.autoscaler_events(limit, pool))

    # ------------------------------------------------------------------ access

    @operation
    def delete_run(self, run_id: str) -> Op[GcReportRecord]:
        """Delete a run that has ended, with its jobs, logs, artifact names and the KV keys its jobs
        made (an admin token); a run still running is refused: cancel it first."""
        return (yield from retention.delete_run(run_id))

    @operation
    def collect_garbage(self, dry_run: bool = False) -> Op[GcReportRecord]:
        """Apply the master's retention now (an admin token); with dry_run, only say what would go."""
        return (yield from retention.collect_garbage(dry_run))

    @operation
    def audit(self, since: float = 0.0, limit: int = 0) -> Op[list[AuditRecord]]:
        """The audit log's latest entries at or after `since` (oldest first; an admin or read token)."""
        return (yield from audit_ops.audit(since, limit))

    @operation
    def create_token(
        self,
        role: str,
        name: str = "",
        expires_in: float = 0.0,
        pool: str = "",
        tags: list[str] | None = None,
    ) -> Op[tuple[str, TokenRecord]]:
        """Make a named token with a role (admin, submit, read, worker): (the token, shown this
        once; its record). `expires_in` seconds (0: never); `pool`/`tags` bind a worker token."""
        return (yield from tokens.create_token(role, name, expires_in, pool, tags))

    @operation
    def whoami(self) -> Op[IdentityRecord]:
        """Who the master takes this client's credential for: its kind (cluster, admin, submit,
        read, job...), a named token's name, a job credential's run."""
        return (yield from tokens.whoami())

    @operation
    def list_tokens(self) -> Op[list[TokenRecord]]:
        """The named tokens' records (never the tokens)."""
        return (yield from tokens.list_tokens())

    @operation
    def revoke_token(self, name: str) -> Op[TokenRecord]:
        """Revoke a named token: it admits nothing from now on, and its workers are disconnected."""
        return (yield from tokens.revoke_token(name))

    @operation
    def set_secret(self, name: str, value: str | bytes) -> Op[None]:
        """Set (or replace) secret `name`: encrypted on the master, given to the jobs that name it
        in `secrets` in their environment only. The cluster token only."""
        yield from secrets.set_secret(name, value)

    @operation
    def list_secrets(self) -> Op[list[SecretRecord]]:
        """The secrets' names and when each was last set (never a value; the cluster token only)."""
        return (yield from secrets.list_secrets())

    @operation
    def delete_secret(self, name: str) -> Op[None]:
        """Delete secret `name` (JobNotFound, a LookupError, when there is none; the cluster token only)."""
        yield from secrets.delete_secret(name)

    # ------------------------------------------------------------------ logs

    @operation
    def read_logs(self, job_id: str, attempt: int | None = None, offset: int = 0) -> Op[list[LogLine]]:
        """Every line logged so far by one attempt (default: the latest)."""
        return (yield from ops.read_logs(job_id, attempt or 0, offset))

    @operation
    def fetch_logs(self, job_id: str, attempt: int | None = None) -> Op[str]:
        """The whole output of one attempt (default: the latest) as text, never truncated (bytes that
        are not UTF-8 read as U+FFFD: `fetch_log_bytes` has them exactly)."""
        lines = yield from ops.read_logs(job_id, attempt or 0)
        return "".join(line + "\n" if line.terminated else line for line in lines)

    @operation
    def fetch_log_bytes(self, job_id: str, attempt: int | None = None) -> Op[bytes]:
        """The exact bytes one attempt wrote (stdout and stderr, line by line as they came),
        without Titan's own notes."""
        lines = yield from ops.read_logs(job_id, attempt or 0)
        return b"".join(line.raw for line in lines if not line.titan)

    # ------------------------------------------------------------------ artifacts

    @operation
    def upload_file(self, path: str | Path) -> Op[str]:
        """Upload a file's content (once) and return its content hash."""
        return (yield from ops.upload(Path(path).resolve(), self._uploads))

    @operation
    def upload_project_folder(self, folder: str | Path) -> Op[str]:
        """Upload a folder as a project archive (once per content) and return its hash."""
        return (yield from ops.upload_project(Path(folder), self._uploads))

    @operation
    def publish_artifact(self, name: str, path: str | Path, run_id: str | None = None) -> Op[str]:
        """Upload a file under a name (the cluster's namespace, or a run's); returns its hash."""
        return (yield from ops.publish_artifact(name, Path(path), run_id or "", self._uploads))

    @operation
    def get_artifact(
        self, name: str, save_path: str | Path | None = None, run_id: str | None = None
    ) -> Op[Path]:
        """Download a named artifact to `save_path` (default: its name in the current directory)."""
        found = yield from ops.resolve_artifact(name, run_id or "")
        return (yield from ops.download(found.hash, Path(save_path or Path(name).name)))

    fetch_artifact = get_artifact

    @operation
    def download(self, artifact_hash: str, dest: str | Path) -> Op[Path]:
        """Write the artifact with this content hash to `dest`, checking what arrives."""
        return (yield from ops.download(artifact_hash, Path(dest)))

    # ------------------------------------------------------------------ KV

    @operation
    def store_put(self, key: str, value: Any) -> Op[None]:
        yield from ops.kv("put", key, ops.as_text(value))

    @operation
    def store_get(self, key: str) -> Op[str | None]:
        response = yield from ops.kv("get", key)
        return response.value if response.found else None

    @operation
    def store_delete(self, key: str) -> Op[bool]:
        return (yield from ops.kv("delete", key)).changed

    @operation
    def store_incr(self, key: str, amount: int = 1) -> Op[int]:
        return (yield from ops.kv_incr(key, amount))

    @operation
    def store_cas(self, key: str, expected: Any, value: Any) -> Op[bool]:
        """Set `key` to `value` only if it holds `expected` (None: only if absent). True if it was set."""
        exp = None if expected is None else ops.as_text(expected)
        return (yield from ops.kv("cas", key, ops.as_text(value), expected=exp)).changed

    @operation
    def store_sadd(self, key: str, member: Any) -> Op[bool]:
        """Add to a set; True if the member was new (== 1 for code written for the original)."""
        return (yield from ops.kv("sadd", key, ops.as_text(member, "member"))).changed

    @operation
    def store_srem(self, key: str, member: Any) -> Op[bool]:
        return (yield from ops.kv("srem", key, ops.as_text(member, "member"))).changed

    @operation
    def store_keys(self, prefix: str = "", limit: int = 0) -> Op[dict[str, str]]:
        """The KV store's keys that start with `prefix`, in order, each with its kind ("value" or
        "set"); at most `limit` (0: all)."""
        return (yield from ops.kv_keys(prefix, limit))

    @operation
    def store_smembers(self, key: str) -> Op[set[str]]:
        return set((yield from ops.kv("smembers", key)).members)


def _path(value: str | Path | None) -> Path | None:
    return Path(value) if value is not None else None


def _ref(run_id: str, job_id: str | None) -> str:
    return f"{run_id}/{job_id}" if job_id else run_id


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _load_pipeline(path: str | Path) -> Any:
    """The YAML pipeline at `path`: the YAML parser is imported by the calls that read one only."""
    from titan_runtime.client.pipeline import load_pipeline

    return load_pipeline(path)
