"""`TitanRunLauncher`: a Dagster run's run worker (`dagster api execute_run`) as a Titan job.

Configured in dagster.yaml::

    run_launcher:
      module: titan_dagster
      class: TitanRunLauncher
      config:
        address: titan-master:9090     # default: TITAN_ADDRESS, ... (as for the executor)
        token: {env: TITAN_TOKEN}
        requirement: dagster           # worker tags the run worker needs
        priority: 10
        env: {DAGSTER_HOME: /opt/dagster/home}

The run worker then orchestrates the run's steps with whatever executor the job uses
(`titan_executor` sends each step to Titan as well). Terminating the run cancels the run
worker's Titan job (SIGTERM to its process group, SIGKILL after the worker's grace period),
which makes Dagster forward the termination to its steps; any step job of the run still alive
after that is cancelled too, so nothing keeps running.

With Dagster's run monitoring (`run_monitoring: {enabled: true, max_resume_run_attempts: N}` in
dagster.yaml, and `dagster-daemon run`), a run whose run worker died (killed, its host lost) is
resumed: a new run worker job (`-rN` after the run id) takes over, steps that succeeded are kept
and step jobs still running are looked after, not started again.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

from dagster import (
    DagsterRun,
    Field,
    IntSource,
    MetadataValue,
    Noneable,
    Permissive,
    StringSource,
    serialize_value,
)

from titan_dagster import naming, remote
from titan_dagster._compat import (
    CheckRunHealthResult,
    ConfigurableClass,
    ConfigurableClassData,
    EngineEventData,
    ExecuteRunArgs,
    LaunchRunContext,
    ResumeRunArgs,
    ResumeRunContext,
    RunLauncher,
    UserConfigSchema,
    WorkerStatus,
)
from titan_dagster.compute_logs import CAPTURE_ENV, CAPTURE_TITAN
from titan_dagster.errors import TitanConfigError
from titan_dagster.placement import Placement, parse_env, parse_priority, parse_requirement, parse_timeout
from titan_dagster.resume_run import RESUME_ARGS_ENV
from titan_runtime import JobNotFound, TitanClient, TitanError

RUN_COMMAND = ("{python}", "-m", "dagster", "api", "execute_run")
RUN_ARGS_ENV = "DAGSTER_COMPRESSED_EXECUTE_RUN_ARGS"
RESUME_COMMAND = ("{python}", "-m", "titan_dagster.resume_run")
#: Tags on the Dagster run: which Titan job is its run worker, on which master.
TAG_RUN_WORKER = "titan/run_worker_job"
TAG_MASTER = "titan/master"


class TitanRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each Dagster run's run worker as a Titan job (see the module docstring)."""

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        requirement: str | None = None,
        priority: int = 1,
        timeout: float | None = None,
        env: dict[str, Any] | None = None,
        cancel_timeout: float = 60.0,
        warm: bool = True,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        super().__init__()
        where = "TitanRunLauncher config (run_launcher: in dagster.yaml)"
        self._address = address
        self._token = token
        self._placement = Placement(
            requirement=parse_requirement(requirement, f"{where}, requirement"),
            priority=parse_priority(priority, f"{where}, priority"),
            timeout=parse_timeout(timeout, f"{where}, timeout"),
        )
        self._env = parse_env(env, f"{where}, env")
        if cancel_timeout <= 0:
            raise TitanConfigError(f"{where}: cancel_timeout must be more than 0 seconds")
        self._cancel_timeout = float(cancel_timeout)
        self._warm = bool(warm)
        self._inst_data = inst_data
        self._client: TitanClient | None = None

    # ------------------------------------------------------------------ ConfigurableClass

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return {
            "address": Field(Noneable(StringSource), is_required=False, default_value=None),
            "token": Field(Noneable(StringSource), is_required=False, default_value=None),
            "requirement": Field(Noneable(StringSource), is_required=False, default_value=None),
            "priority": Field(IntSource, is_required=False, default_value=1),
            "timeout": Field(Noneable(float), is_required=False, default_value=None),
            "env": Field(Permissive(), is_required=False, default_value={}),
            "cancel_timeout": Field(float, is_required=False, default_value=60.0),
            "warm": Field(bool, is_required=False, default_value=True),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: dict[str, Any]
    ) -> TitanRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    @property
    def client(self) -> TitanClient:
        if self._client is None:
            self._client = remote.connect(self._address, self._token)
        return self._client

    # ------------------------------------------------------------------ RunLauncher

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        args = ExecuteRunArgs(
            job_origin=self._origin(run),
            run_id=run.run_id,
            instance_ref=self._instance.get_ref(),
            set_exit_code_on_failure=True,  # a failed run shows as a FAILED Titan job
        )
        self._launch(run, RUN_COMMAND, {RUN_ARGS_ENV: _compressed(args)}, resume=0)

    @property
    def supports_resume_run(self) -> bool:
        return True

    def resume_run(self, context: ResumeRunContext) -> None:
        """Run monitoring found the run worker dead (its Titan job failed, its host was lost):
        start another, `dagster api resume_run`, which skips the steps that succeeded and looks
        after the step jobs still running instead of starting them again."""
        run = context.dagster_run
        args = ResumeRunArgs(
            job_origin=self._origin(run),
            run_id=run.run_id,
            instance_ref=self._instance.get_ref(),
            set_exit_code_on_failure=True,
        )
        resume = context.resume_attempt_number or 1
        self._launch(run, RESUME_COMMAND, {RESUME_ARGS_ENV: _compressed(args)}, resume)

    @staticmethod
    def _origin(run: DagsterRun) -> Any:
        if run.job_code_origin is None:
            raise TitanConfigError(
                f"run {run.run_id} has no code origin, so a Titan worker could not load its job; "
                "launch it from a code location (dagster dev, a workspace.yaml) or with a reconstructable job"
            )
        return run.job_code_origin

    def _launch(
        self, run: DagsterRun, command: tuple[str, ...], args_env: dict[str, str], resume: int
    ) -> None:
        """Submit a run worker (the `resume`-th resumed one, 0: the first) as a Titan job, tag the
        Dagster run with it (health checks and termination follow the latest) and say so."""
        env = {**self._env, **args_env, CAPTURE_ENV: CAPTURE_TITAN}
        submission = remote.submit(
            self.client,
            run_id=naming.run_worker_run_id(run.run_id, resume),
            job_id=naming.RUN_WORKER_JOB_ID,
            name=f"{run.job_name}:run-worker",
            command=command,
            env=env,
            placement=self._placement,
            preload=remote.WARM_PACKAGES if self._warm else (),
            group=naming.group_id(run.run_id),
            labels={
                naming.LABEL_KIND: "run_worker",
                naming.LABEL_RUN_ID: run.run_id,
                naming.LABEL_JOB: run.job_name,
            },
        )
        self._instance.add_run_tags(
            run.run_id, {TAG_RUN_WORKER: submission.ref, TAG_MASTER: self.client.address}
        )
        what = (
            f"Resumed the run (attempt {resume}) with a new run worker"
            if resume
            else "Launched the run worker"
        )
        self._instance.report_engine_event(
            message=f"{what} as Titan job {submission.ref}.",
            dagster_run=run,
            engine_event_data=EngineEventData(
                metadata={
                    "Titan job": MetadataValue.text(submission.ref),
                    "Titan master": MetadataValue.text(self.client.address),
                    "Logs": MetadataValue.text(f"titan-runtime logs {submission.ref} --follow"),
                }
            ),
            cls=self.__class__,
        )

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        ref = run.tags.get(TAG_RUN_WORKER)
        self._instance.report_run_canceling(run)
        cancelled: list[str] = []
        if ref:
            try:
                cancelled = self.client.cancel(ref, wait=True, timeout=self._cancel_timeout)
            except JobNotFound:
                pass
        # Whatever the run worker did not stop in time (its executor forwards the termination to
        # the step jobs, but it may have been SIGKILLed first): no job of this run keeps running.
        stragglers = self._cancel_group(run_id, skip=ref)
        self._instance.report_engine_event(
            message=(
                f"Cancelled Titan job {ref} (the run worker)"
                if cancelled
                else f"Run worker {ref} had already ended"
            )
            + (
                f" and {len(stragglers)} step job(s) still running: {', '.join(stragglers)}."
                if stragglers
                else "."
            ),
            dagster_run=run,
            cls=self.__class__,
        )
        run = self._instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            # The run worker was killed before it could record the end of the run.
            self._instance.report_run_canceled(run)
        return True

    def _cancel_group(self, run_id: str, skip: str | None) -> list[str]:
        cancelled = []
        for titan_run in self.client.list_runs(agent_run_id=naming.group_id(run_id)):
            if titan_run.terminal or (skip and skip.startswith(titan_run.id + "/")):
                continue
            cancelled += self.client.cancel(titan_run.id, wait=True, timeout=self._cancel_timeout)
        return cancelled

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        ref = run.tags.get(TAG_RUN_WORKER)
        if not ref:
            return CheckRunHealthResult(WorkerStatus.NOT_FOUND, "the run has no Titan run worker job tag")
        try:
            record = self.client.get_job(ref)
        except JobNotFound:
            return CheckRunHealthResult(WorkerStatus.NOT_FOUND, f"the Titan master has no job {ref}")
        except TitanError as exc:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, str(exc), transient=True)
        if not record.terminal:
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=ref)
        if record.state == "SUCCEEDED":
            return CheckRunHealthResult(WorkerStatus.SUCCESS, run_worker_id=ref)
        return CheckRunHealthResult(
            WorkerStatus.FAILED, remote.describe_failure(self.client, record), run_worker_id=ref
        )

    def get_run_worker_debug_info(
        self, run: DagsterRun, include_container_logs: bool | None = True
    ) -> str | None:
        ref = run.tags.get(TAG_RUN_WORKER)
        if not ref:
            return None
        try:
            record = self.client.get_job(ref)
        except TitanError as exc:
            return f"Titan job {ref}: {exc}"
        if not include_container_logs:
            return remote.describe_end(record)
        return remote.describe_failure(self.client, record)

    def dispose(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _compressed(args: ExecuteRunArgs | ResumeRunArgs) -> str:
    """The run's arguments as `dagster api execute_run` (and `titan_dagster.resume_run`) read them
    from their environment."""
    return base64.b64encode(zlib.compress(serialize_value(args).encode())).decode()
