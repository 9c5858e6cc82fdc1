"""`TitanPipelineOperator`: a whole Titan YAML pipeline as one Airflow task.

Airflow sees one task; Titan schedules the pipeline's jobs (their order, tags, priorities,
fan-out and fan-in) on its workers. The task log shows each job's state changes as they happen
and each job's output, live, prefixed with the job's id. Like `TitanOperator`, the Titan run id
is derived from the Airflow try, so executing the task again for the same try attaches to the
run already submitted, and a retry runs the pipeline again as a new run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from titan_airflow import naming, output
from titan_airflow.cancellation import KILL_TIMEOUT_S, cancel_earlier_tries
from titan_airflow.errors import TitanConfigError, TitanJobFailed
from titan_airflow.hooks import DEFAULT_CONN_ID, TitanHook
from titan_airflow.output import LogCursor
from titan_runtime import JobRecord, LogLine, RunRecord, TitanClient

XCOM_RUN_KEY = "titan_run_id"


class TitanPipelineOperator(BaseOperator):
    """Run the Titan pipeline in `pipeline` (a YAML file) and wait for all its jobs.

    :param pipeline: path of the pipeline YAML (the original Titan format); relative paths are
        relative to the DAG file's folder. Job files are relative to the YAML, as always.
    :param titan_conn_id: Airflow connection of type `titan`.
    :param poll_interval: seconds between looks at the jobs' states (the task log's progress).
    :param log_tail_lines: how many last lines of each failed job a failure message quotes.

    XCom: the return value maps each job id to its result (jobs that set none are left out);
    the key "titan_run_id" holds the Titan run id (`titan-runtime run-status RUN_ID`).
    """

    template_fields: Sequence[str] = ("pipeline",)
    ui_color = "#c8dcf2"

    def __init__(
        self,
        *,
        pipeline: str,
        titan_conn_id: str | None = DEFAULT_CONN_ID,
        poll_interval: float = 0.5,
        log_tail_lines: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not pipeline or not isinstance(pipeline, str):
            raise TitanConfigError(f"task {self.task_id}: pipeline must be the path of a YAML file")
        if poll_interval <= 0:
            raise TitanConfigError(f"task {self.task_id}: poll_interval must be more than 0 seconds")
        self.pipeline = pipeline
        self.titan_conn_id = titan_conn_id
        self.poll_interval = float(poll_interval)
        self.log_tail_lines = log_tail_lines
        self._titan_run_id: str | None = None

    def _pipeline_path(self) -> str:
        fileloc = getattr(self.dag, "fileloc", None) if self.has_dag() else None
        base = os.path.dirname(fileloc) if fileloc else os.getcwd()
        path = os.path.join(base, os.path.expanduser(self.pipeline))
        if not os.path.isfile(path):
            raise TitanConfigError(
                f"task {self.task_id}: pipeline {path} does not exist (relative paths are relative to "
                "the DAG file's folder)"
            )
        return path

    def submit(self, client: TitanClient, context: Context) -> str:
        """Submit this try's pipeline run (or find it, when this try submitted it before), once the
        earlier tries' runs have stopped; return its id."""
        ti = context["ti"]
        ids = naming.try_key(ti)
        for earlier in cancel_earlier_tries(client, ids):
            self.log.info("Cancelled Titan run %s of an earlier try of this task", earlier)
        run = client.submit_yaml(
            self._pipeline_path(), run_id=naming.titan_run_id(*ids), labels=naming.run_labels(*ids)
        )
        self._titan_run_id = str(run)
        ti.xcom_push(key=XCOM_RUN_KEY, value=str(run))
        return str(run)

    def execute(self, context: Context) -> Any:
        with TitanHook(titan_conn_id=self.titan_conn_id).get_conn() as client:
            run_id = self.submit(client, context)
            self.log.info(
                "Titan run %s of pipeline %s (master %s); also: titan-runtime run-status %s",
                run_id,
                self.pipeline,
                client.address,
                run_id,
            )
            record = _Watch(self, client, run_id).run()
            return self._finish(client, record)

    def _finish(self, client: TitanClient, record: RunRecord) -> dict[str, Any]:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(record.counts.items()))
        if record.state != "SUCCEEDED":
            failed = [j for j in record.jobs if j.state in ("FAILED", "CANCELLED")]
            parts = [f"Titan run {record.id} {record.state} ({counts})."]
            for job in failed:
                parts.append(output.failure_message(job, output.tail(client, job.ref, self.log_tail_lines)))
            raise TitanJobFailed("\n".join(parts))
        self.log.info("Titan run %s SUCCEEDED (%s)", record.id, counts)
        return {job.id: client.get_result(job.ref) for job in record.jobs if job.has_result}

    def on_kill(self) -> None:
        """The task is being killed: cancel the whole run; every job's process tree gets SIGTERM, then SIGKILL."""
        run_id = self._titan_run_id
        if not run_id:
            return
        self.log.info("Cancelling Titan run %s", run_id)
        with TitanHook(titan_conn_id=self.titan_conn_id).get_conn() as client:
            cancelled = client.cancel(run_id, wait=True, timeout=KILL_TIMEOUT_S)
        self.log.info("Cancelled %s", ", ".join(cancelled) or f"nothing ({run_id} had ended)")


class _Watch:
    """Logs a run's progress: one line per job state change, and every job's output as it is printed.

    Each started job gets a thread that follows its output to the end (all attempts) and then
    logs how the job ended, so a job's lines always come before its end state in the task log,
    and no line is lost even when a job starts and ends between two looks at the run.
    """

    def __init__(self, op: TitanPipelineOperator, client: TitanClient, run_id: str) -> None:
        self.op = op
        self.client = client
        self.run_id = run_id
        self.seen: dict[str, tuple[str, int]] = {}
        self.ended: set[str] = set()
        self.followers: dict[str, threading.Thread] = {}

    def run(self) -> RunRecord:
        while True:
            record = self.client.get_run(self.run_id)
            for job in record.jobs:
                self._look(job)
            if record.terminal:
                break
            try:
                self.client.wait_run(self.run_id, timeout=self.op.poll_interval)
            except TimeoutError:
                pass
        for thread in self.followers.values():
            thread.join()
        return self.client.get_run(self.run_id)

    def _look(self, job: JobRecord) -> None:
        if job.attempt and job.id not in self.followers:
            thread = threading.Thread(target=self._follow, args=(job,), name=f"titan-{job.id}", daemon=True)
            self.followers[job.id] = thread
            thread.start()
        if job.terminal and job.id in self.followers:
            return  # its follower reports the end, after the last line of output
        self._report(job)

    def _report(self, job: JobRecord) -> None:
        key = (job.state, job.attempt)
        if self.seen.get(job.id) == key or (job.id in self.ended and not job.terminal):
            return  # nothing new, or an older look at a job whose end is already logged
        self.seen[job.id] = key
        if job.terminal:
            self.ended.add(job.id)
        details = []
        if job.worker_name and job.state in ("ASSIGNED", "RUNNING"):
            details.append(f"on worker {job.worker_name}")
        if job.attempt > 1:
            details.append(f"attempt {job.attempt}")
        if job.terminal and job.duration is not None:
            details.append(f"{job.duration:.2f}s")
        if job.reason and job.state != "SUCCEEDED":
            details.append(job.reason)
        self.op.log.info("job %s %s%s", job.id, job.state, f" ({'; '.join(details)})" if details else "")

    def _follow(self, job: JobRecord) -> None:
        def emit(line: LogLine) -> None:
            self.op.log.info("[%s] %s", job.id, output.render(line))

        try:
            self._report(output.follow(self.client, job.ref, LogCursor(), emit))
        except Exception as exc:  # a lost stream must not hide the run's outcome
            self.op.log.warning("Could not follow the output of job %s: %s", job.id, exc)
