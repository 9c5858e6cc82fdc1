"""`titan-runtime mcp`: the cluster as tools for LLM agents, over the Model Context Protocol (stdio).

An agent (Claude Desktop, an IDE, any MCP client) starts this as a subprocess and calls its tools:
submit a DAG, read run and job status, read logs a page at a time, KV get and put, list and decide
approvals, cancel a run. It is a client of the master like any other, with the credential it is
given (TITAN_TOKEN, `--token`): a read token gets the read tools only, and the master refuses what
the credential may not do whatever the tools are. Every answer is bounded (jobs, log lines and bytes),
so an agent's context is never flooded by a 10,000-job run or a 50 MB log.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from titan_runtime.client.errors import InvalidJob, TitanError
from titan_runtime.client.pipeline import load_pipeline
from titan_runtime.client.records import JobRecord
from titan_runtime.client.sync import TitanClient
from titan_runtime.core.states import JobState

#: Kinds of credential that may change something (a read token may not; the master says the rest).
WRITERS = frozenset({"cluster", "admin", "submit", "job"})
MAX_JOBS = 1000
MAX_LOG_LINES = 2000
MAX_LOG_BYTES = 256 * 1024
INSTRUCTIONS = """Titan runs scripts, commands and DAGs on a cluster of capability-tagged workers.
Submit work with submit_dag (YAML text in Titan's pipeline format, or a list of jobs such as
{"id": "a", "command": ["python", "-c", "print(1)"], "depends_on": [], "requirement": "GPU"}),
then follow it with run_status, job_status and read_logs. A job is named RUN_ID/JOB_ID."""


@contextmanager
def _said() -> Iterator[None]:
    """A Titan error as the tool's error, its message meant for whoever called (what was wrong,
    what to do); anything else is the server's own failure, told without details."""
    try:
        yield
    except TitanError as exc:
        raise ToolError(str(exc)) from None


def _job(record: JobRecord) -> dict[str, Any]:
    return {
        "ref": record.ref,
        "state": record.state,
        "reason": record.reason,
        "attempt": record.attempt,
        "worker": record.worker_name,
        "exit_code": record.exit_code,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "parents": record.parents,
    }


class Tools:
    """The tools, as methods of a client (their docstrings are what the agent reads)."""

    def __init__(self, client: TitanClient, workdir: Path) -> None:
        self.client = client
        self.workdir = workdir

    # ------------------------------------------------------------------ reads

    def run_status(self, run_id: str, states: list[str] | None = None, limit: int = 100) -> dict[str, Any]:
        """A run's state and job counts, and its jobs (only those in `states`, e.g. ["FAILED",
        "RUNNING"], when given), at most `limit` of them (up to 1000)."""
        limit = max(1, min(limit, MAX_JOBS))
        wanted = [s.upper() for s in states or []] or [state.value for state in JobState]
        with _said():
            run = self.client.get_run(run_id, jobs=wanted, limit=limit)
        matching = sum(n for state, n in run.counts.items() if state in wanted)
        return {
            "run_id": run.id,
            "name": run.name,
            "state": run.state,
            "reason": run.reason,
            "counts": run.counts,
            "jobs": [_job(j) for j in run.jobs],
            "jobs_left_out": max(0, matching - len(run.jobs)),
        }

    def job_status(self, job: str) -> dict[str, Any]:
        """One job (RUN_ID/JOB_ID): its state, why, its attempt, worker and exit code."""
        with _said():
            return _job(self.client.get_job(job))

    def read_logs(self, job: str, tail: int = 200, offset: int = 0) -> dict[str, Any]:
        """A job's output. With offset 0: its last `tail` lines (up to 2000). With an offset (the
        `next_offset` of an earlier call): the lines after it, up to 2000 lines or 256 KB; call
        again with the new `next_offset` while `more` is true. `job_ended`: no more output will come."""
        tail = max(1, min(tail, MAX_LOG_LINES))
        lines: deque[str] = deque(maxlen=tail if not offset else None)
        size, next_offset, more = 0, offset, False
        with _said():
            for line in self.client.follow_logs(job, offset=offset, follow=False):
                if offset and lines and (len(lines) >= MAX_LOG_LINES or size + len(line) > MAX_LOG_BYTES):
                    more = True
                    break
                text = f"[stderr] {line}" if line.stream == "stderr" else str(line)
                lines.append(text[:MAX_LOG_BYTES])
                size += len(text)
                next_offset = line.next_offset
            ended = self.client.get_job(job).terminal
        text = "\n".join(lines)
        if not offset:
            text = text[-MAX_LOG_BYTES:]
        return {"text": text, "next_offset": next_offset, "more": more, "job_ended": ended}

    def kv_get(self, key: str) -> dict[str, Any]:
        """The value stored under `key` in the cluster's KV store (null when there is none)."""
        with _said():
            return {"key": key, "value": self.client.store_get(key)}

    def list_approvals(self) -> list[dict[str, Any]]:
        """The approval gates waiting for a decision: each job, and the question it asks."""
        with _said():
            return [{**_job(j), "message": j.approval_message} for j in self.client.list_approvals()]

    # ------------------------------------------------------------------ changes

    def submit_dag(
        self,
        yaml_text: str = "",
        jobs: list[dict[str, Any]] | None = None,
        name: str = "",
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Submit a DAG as one run: `yaml_text` in Titan's pipeline format (name, jobs: id, file or
        command, depends_on, requirement, priority, env, timeout, retries, resources: {cpus, memory,
        gpus}...), or `jobs`, a list of such job mappings. Files are relative to the server's
        working directory. Returns the run id and its jobs; follow it with run_status."""
        if bool(yaml_text) == bool(jobs):
            raise ToolError("give either yaml_text (a pipeline) or jobs (a list of job mappings), not both")
        text = yaml_text or yaml.safe_dump({"name": name or "mcp", "jobs": jobs})
        with _said():
            try:
                pipeline = load_pipeline(self.workdir / "pipeline.yaml", text=text)
            except InvalidJob as exc:
                raise ToolError(str(exc)) from None
            run = self.client.submit_dag(
                name or pipeline.name,
                pipeline.jobs,
                labels={**pipeline.labels, **(labels or {})},
                base_dir=self.workdir,
            )
        return {"run_id": str(run), "jobs": [f"{run}/{job.id}" for job in pipeline.jobs]}

    def kv_put(self, key: str, value: str) -> dict[str, Any]:
        """Store `value` under `key` in the cluster's KV store."""
        with _said():
            self.client.store_put(key, value)
        return {"key": key, "stored": True}

    def decide_approval(self, job: str, approve: bool, comment: str = "") -> dict[str, Any]:
        """Approve (its dependents run) or reject (it fails) the gate after `job` (RUN_ID/JOB_ID)."""
        run_id, _, job_id = job.partition("/")
        if not job_id:
            raise ToolError(f"name the job as RUN_ID/JOB_ID, not {job!r}")
        with _said():
            record = (self.client.approve if approve else self.client.reject)(run_id, job_id, comment)
        return _job(record)

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        """Cancel a run: every job of it that has not ended; returns once their processes are gone."""
        with _said():
            cancelled = self.client.cancel(run_id, wait=True)
        return {"run_id": run_id, "cancelled": cancelled}

    def reads(self) -> list[Callable[..., Any]]:
        return [self.run_status, self.job_status, self.read_logs, self.kv_get, self.list_approvals]

    def changes(self) -> list[Callable[..., Any]]:
        return [self.submit_dag, self.kv_put, self.decide_approval, self.cancel_run]


def build_server(client: TitanClient, workdir: Path) -> MCPServer:
    """The MCP server for `client`'s credential: the read tools, and the others when it may write.
    A master it cannot reach, or a credential it refuses, is the command's error (TitanError)."""
    kind = client.whoami().kind
    server = MCPServer("titan", instructions=INSTRUCTIONS)
    tools = Tools(client, workdir)
    for tool in tools.reads() + (tools.changes() if kind in WRITERS else []):
        server.add_tool(tool)
    return server
