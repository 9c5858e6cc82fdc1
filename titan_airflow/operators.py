"""`TitanOperator`: run one script or command on a Titan worker as an Airflow task.

Airflow keeps the schedule, the UI and the history; Titan runs the process on a worker with the
right tags and streams its output back. The operator submits the job under a run id derived
from the Airflow try (see `naming`), so running `execute` again for the same try attaches to
the job already submitted instead of starting a second one.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context

from titan_airflow import naming, output
from titan_airflow.cancellation import KILL_TIMEOUT_S, cancel_earlier_tries
from titan_airflow.errors import TitanConfigError, TitanJobFailed
from titan_airflow.hooks import DEFAULT_CONN_ID, TitanHook
from titan_airflow.output import LogCursor
from titan_airflow.triggers import TitanJobTrigger
from titan_runtime import JobRecord, LogLine, TitanClient, TitanJob
from titan_runtime.client import parse_resources

XCOM_REF_KEY = "titan_ref"


def _seconds(value: float | timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise TitanConfigError(f"{what} must be a positive number of seconds or a timedelta, not {value!r}")
    return float(seconds)


def _templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _resources(value: Any, what: str, rendered: bool) -> dict[str, Any] | None:
    """The job's `resources` from {"cpus": 2, "memory": "8G", "gpus": 1}, checked by the SDK's
    own parser (so the operator refuses exactly what a TitanJob would, but when the DAG file is
    parsed), in the parsed form: the same try always submits the same spec.

    A value still holding a Jinja template ("{{ params.gpus }}") is checked once rendered; until
    then only its key is (`rendered` False): the operator is built before anything is rendered.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TitanConfigError(
            f"{what}: titan_resources must be a dict such as {{'cpus': 2, 'memory': '8G', 'gpus': 1}}, "
            f"not {value!r}"
        )
    concrete = {key: 0 if not rendered and _templated(amount) else amount for key, amount in value.items()}
    try:
        cpus, memory_mb, gpus = parse_resources(concrete, f"{what}: titan_resources: ")
    except ValueError as exc:
        raise TitanConfigError(str(exc)) from None
    asked = {"cpus": cpus, "memory_mb": memory_mb, "gpus": gpus}
    return {key: amount for key, amount in asked.items() if amount} or None


class TitanOperator(BaseOperator):
    """Run `script` (a file, shipped to the worker) or `command` (argv run on the worker) on Titan.

    :param script: path of a script; relative paths are relative to `project_dir` when given, else
        to the DAG file's folder. .py runs with the worker's Python, .sh with bash, anything else directly.
    :param command: program and arguments (a list, or a string split like a shell would, without
        running one). "{python}" stands for the worker's Python interpreter.
    :param args: arguments after the script or command (a list, or a string split like a shell would).
    :param requirement: worker tag the job needs ("GENERAL": any worker).
    :param titan_resources: what the job holds on its worker while it runs, as a TitanJob's
        `resources`: {"cpus": 2, "memory": "8G", "gpus": 1} ("memory_mb": N is the older spelling
        of memory). Titan places it only where all of it fits; a GPU job sees its devices in
        CUDA_VISIBLE_DEVICES. Checked when the DAG is parsed (templated values once rendered).
        Not named `resources`: that is BaseOperator's own (Airflow's description of the task
        process's needs), which Airflow neither lets an operator template nor reads as Titan's.
    :param priority: higher runs first among jobs waiting for the same workers.
    :param env: extra environment variables for the remote process. AIRFLOW_CTX_DAG_ID,
        AIRFLOW_CTX_TASK_ID, AIRFLOW_CTX_DAG_RUN_ID and AIRFLOW_CTX_TRY_NUMBER are always set.
    :param timeout: seconds (or a timedelta) after which Titan kills the job and its children.
    :param project_dir: a folder shipped with the job as its working tree (relative paths are
        relative to the DAG file's folder); the script must be inside it. Unchanged folders are
        uploaded once and cached by the workers.
    :param deferrable: free the Airflow worker slot while the job runs (a `TitanJobTrigger` waits
        in the triggerer); the task log gets the whole output when the task resumes.
    :param titan_conn_id: Airflow connection of type `titan` (host, port, token as password).
    :param log_tail_lines: how many last lines of output a failure message quotes.

    XCom: the return value is the job's result (what it passed to `task.set_result`, or None);
    the key "titan_ref" holds the Titan job reference (`titan-runtime logs REF`).
    """

    template_fields: Sequence[str] = (
        "script",
        "command",
        "args",
        "env",
        "requirement",
        "titan_resources",
        "project_dir",
    )
    template_fields_renderers = {"env": "json", "command": "py", "args": "py", "titan_resources": "json"}
    ui_color = "#d8e7f8"

    def __init__(
        self,
        *,
        script: str | None = None,
        command: str | Sequence[str] | None = None,
        args: str | Sequence[Any] | None = None,
        requirement: str = "GENERAL",
        titan_resources: dict[str, Any] | None = None,
        priority: int = 1,
        env: dict[str, Any] | None = None,
        timeout: float | timedelta | None = None,
        project_dir: str | None = None,
        deferrable: bool = False,
        titan_conn_id: str | None = DEFAULT_CONN_ID,
        log_tail_lines: int = 30,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("resources") is not None:
            # BaseOperator's own (only an explicit one reaches here, not default_args'): Titan would
            # never see it, and a job meant to get a GPU would silently run without one.
            raise TitanConfigError(
                f"task {kwargs.get('task_id')}: resources= is Airflow's own BaseOperator argument, "
                "which Titan never sees; ask Titan with titan_resources={'cpus': 2, 'memory': '8G', "
                "'gpus': 1}"
            )
        super().__init__(**kwargs)
        if (script is None) == (command is None):
            raise TitanConfigError(
                f"task {self.task_id}: give exactly one of script= (a file) or command= (a program and its args)"
            )
        if env is not None and not isinstance(env, dict):
            raise TitanConfigError(f"task {self.task_id}: env must be a dict of names to values, not {env!r}")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TitanConfigError(f"task {self.task_id}: priority must be an integer, not {priority!r}")
        self.script = script
        self.command = command
        self.args = args
        _resources(titan_resources, f"task {self.task_id}", rendered=False)
        self.requirement = requirement
        self.titan_resources = titan_resources
        self.priority = priority
        self.env = env
        self.timeout = _seconds(timeout, f"task {self.task_id}: timeout")
        self.project_dir = project_dir
        self.deferrable = deferrable
        self.titan_conn_id = titan_conn_id
        self.log_tail_lines = log_tail_lines
        self._titan_ref: str | None = None

    # ------------------------------------------------------------------ building the job

    def _dag_folder(self) -> str:
        fileloc = getattr(self.dag, "fileloc", None) if self.has_dag() else None
        return os.path.dirname(fileloc) if fileloc else os.getcwd()

    def _project_path(self) -> str | None:
        if self.project_dir is None:
            return None
        path = os.path.join(self._dag_folder(), os.path.expanduser(str(self.project_dir)))
        if not os.path.isdir(path):
            raise TitanConfigError(
                f"task {self.task_id}: project_dir {path} is not a folder (relative paths are relative "
                "to the DAG file's folder)"
            )
        return os.path.realpath(path)

    def _script_path(self, project: str | None) -> str:
        base = project or self._dag_folder()
        path = os.path.realpath(os.path.join(base, os.path.expanduser(str(self.script))))
        where = "the project folder" if project else "the DAG file's folder"
        if not os.path.isfile(path):
            raise TitanConfigError(
                f"task {self.task_id}: script {path} does not exist (relative paths are relative to {where})"
            )
        if project and os.path.commonpath([project, path]) != project:
            raise TitanConfigError(f"task {self.task_id}: script {path} is not inside project_dir {project}")
        return path

    def _argv(self) -> list[str]:
        command = self.command
        argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command or []]
        if not argv or not argv[0].strip():
            raise TitanConfigError(f"task {self.task_id}: the command is empty; give the program to run")
        return argv

    def build_job(self, context: Context) -> TitanJob:
        """The TitanJob this try runs (after templating): the same for every execution of one try."""
        env = naming.airflow_env(*naming.try_key(context["ti"]))
        env.update({str(k): str(v) for k, v in (self.env or {}).items()})
        args = self.args
        if args is not None and not isinstance(args, str):
            args = [str(a) for a in args]
        job = TitanJob(
            job_id=naming.titan_job_id(context["ti"].task_id),
            args=args,
            priority=self.priority,
            requirement=self.requirement or "GENERAL",
            resources=_resources(self.titan_resources, f"task {self.task_id}", rendered=True),
            env=env,
            timeout=self.timeout,
        )
        project = self._project_path()
        job.project_dir = project
        if self.script is not None:
            job.filename = self._script_path(project)
        else:
            job.command = self._argv()
        return job

    def submit(self, client: TitanClient, context: Context) -> str:
        """Submit this try's job (or find it, when this try submitted it before), once the earlier
        tries' jobs have stopped; return its reference."""
        ti = context["ti"]
        ids = naming.try_key(ti)
        run_id = naming.titan_run_id(*ids)
        job = self.build_job(context)
        for earlier in cancel_earlier_tries(client, ids):
            self.log.info("Cancelled Titan run %s of an earlier try of this task", earlier)
        run_id = client.submit_dag(
            f"airflow:{ti.dag_id}.{ti.task_id}", [job], run_id=run_id, labels=naming.run_labels(*ids)
        )
        ref = f"{run_id}/{job.id}"
        self._titan_ref = ref
        ti.xcom_push(key=XCOM_REF_KEY, value=ref)
        return ref

    # ------------------------------------------------------------------ running

    def _hook(self) -> TitanHook:
        return TitanHook(titan_conn_id=self.titan_conn_id)

    def _emit(self, line: LogLine) -> None:
        self.log.info("%s", output.render(line))

    def _on_reconnect(self, exc: Exception, delay: float) -> None:
        self.log.warning("Lost the Titan log stream (%s); reconnecting in %.1fs", exc, delay)

    def execute(self, context: Context) -> Any:
        with self._hook().get_conn() as client:
            ref = self.submit(client, context)
            record = client.get_job(ref)
            if self.deferrable and not record.terminal:
                self.log.info(
                    "Titan job %s is %s (master %s). Deferring until it ends; its output will be written "
                    "here when the task resumes (live meanwhile: titan-runtime logs -f %s)",
                    ref,
                    record.state,
                    client.address,
                    ref,
                )
                self.defer(
                    trigger=TitanJobTrigger(ref=ref, titan_conn_id=self.titan_conn_id),
                    method_name="execute_complete",
                )
            self.log.info(
                "Titan job %s is %s (master %s). Its output follows (also: titan-runtime logs -f %s)",
                ref,
                record.state,
                client.address,
                ref,
            )
            record = output.follow(client, ref, LogCursor(), self._emit, on_reconnect=self._on_reconnect)
            return self._finish(client, record)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resumed after the trigger fired: write the job's whole output to the task log, then finish."""
        event = event or {}
        ti = context["ti"]
        dag_id, task_id, run_id, try_number, map_index = naming.try_key(ti)
        job_id = naming.titan_job_id(task_id)
        earlier = {
            f"{naming.titan_run_id(dag_id, task_id, run_id, n, map_index)}/{job_id}"
            for n in range(try_number)
        }
        if event.get("ref") in earlier:
            # An earlier try's trigger fired after this try began (a cleared task whose trigger
            # Airflow had not yet removed): its job is not this try's. Follow this try's own.
            self.log.info("Ignoring the end of Titan job %s: it was an earlier try's", event["ref"])
            return self.execute(context)
        ref = event.get("ref") or ti.xcom_pull(task_ids=self.task_id, key=XCOM_REF_KEY)
        if not ref:
            raise TitanJobFailed("resumed without a Titan job reference; the trigger event was empty")
        self._titan_ref = ref
        with self._hook().get_conn() as client:
            if event.get("status") == "error":
                raise TitanJobFailed(f"could not follow Titan job {ref}: {event.get('message')}")
            self.log.info("Titan job %s ended while deferred; its output:", ref)
            count = output.catch_up(client, ref, LogCursor(), self._emit)
            self.log.info("(%d line(s) of output from Titan job %s)", count, ref)
            return self._finish(client, client.get_job(ref))

    def _finish(self, client: TitanClient, record: JobRecord) -> Any:
        if record.state != "SUCCEEDED":
            raise TitanJobFailed(
                output.failure_message(record, output.tail(client, record.ref, self.log_tail_lines))
            )
        duration = f" in {record.duration:.2f}s" if record.duration is not None else ""
        self.log.info("Titan job %s SUCCEEDED%s on worker %s", record.ref, duration, record.worker_name)
        return client.get_result(record.ref) if record.has_result else None

    def on_kill(self) -> None:
        """The task is being killed: cancel the Titan job, SIGTERM then SIGKILL to its whole process tree."""
        ref = self._titan_ref
        if not ref:
            return
        self.log.info("Cancelling Titan job %s", ref)
        with self._hook().get_conn() as client:
            cancelled = client.cancel(ref, wait=True, timeout=KILL_TIMEOUT_S)
        self.log.info("Cancelled %s", ", ".join(cancelled) or f"nothing ({ref} had ended)")
