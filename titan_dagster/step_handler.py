"""`TitanStepHandler`: each Dagster step attempt runs as one Titan job.

Dagster's step-delegating executor calls `launch_step` for every step attempt (a retry is a new
launch with a higher attempt count), `check_step_health` every few seconds for the steps it is
waiting on, and `terminate_step` when the run is terminated. The executor learns results only
from the run's event log, which the step process (`python -m dagster api execute_step` on a Titan
worker) writes itself; this handler only has to start the process, notice when it dies without
having reported, and stop it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import DagsterEvent, DagsterEventType, MetadataValue

from titan_dagster import naming, remote
from titan_dagster._compat import CheckStepHealthResult, EngineEventData, StepHandler, StepHandlerContext
from titan_dagster.compute_logs import CAPTURE_ENV, CAPTURE_TITAN
from titan_dagster.placement import Placement, placement_for_step
from titan_runtime import JobNotFound, TitanClient, TitanError, WorkerRecord
from titan_runtime.client import format_memory

#: The step process; its arguments travel in the environment (DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS),
#: and "{python}" is the worker's own interpreter (`dagster` on PATH may be another environment's).
STEP_COMMAND = ("{python}", "-m", "dagster", "api", "execute_step")
#: How long to wait, after a step failed, for its Titan job to end before explaining how it ended.
EXPLAIN_WAIT = 10.0
#: Events that end a step attempt, as Dagster records them.
ATTEMPT_OUTCOMES = {
    DagsterEventType.STEP_SUCCESS,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.STEP_UP_FOR_RETRY,
}


@dataclass(frozen=True)
class StepHandlerSettings:
    address: str | None = None
    token: str | None = None
    #: TLS: the cluster's CA, and a client certificate for a master that requires one (paths).
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    placement: Placement = field(default_factory=Placement)
    env: Mapping[str, str] = field(default_factory=dict)
    #: How long terminate_step waits for the remote processes to be gone.
    cancel_timeout: float = 60.0
    #: Steps forked from a launcher that has imported Dagster (docs/dagster.md, "Warm steps").
    warm: bool = True


class TitanStepHandler(StepHandler):
    """Launches, watches and stops Dagster step attempts as Titan jobs (see the module docstring)."""

    def __init__(self, settings: StepHandlerSettings) -> None:
        super().__init__()
        self._settings = settings
        self._client: TitanClient | None = None
        # (dagster run id, step key, attempt) -> Titan job ref, for re-launched attempts ("-rN" ids).
        self._refs: dict[tuple[str, str, int], str] = {}
        # (dagster run id, step key) -> the Titan job ref of its latest attempt.
        self._latest: dict[tuple[str, str], str] = {}
        self._announced: set[str] = set()

    @property
    def name(self) -> str:
        return "TitanStepHandler"

    @property
    def client(self) -> TitanClient:
        if self._client is None:
            settings = self._settings
            self._client = remote.connect(
                settings.address, settings.token, settings.tls_ca, settings.tls_cert, settings.tls_key
            )
        return self._client

    # ------------------------------------------------------------------ identity of an attempt

    @staticmethod
    def _step_key(context: StepHandlerContext) -> str:
        keys = context.execute_step_args.step_keys_to_execute or []
        if len(keys) != 1:
            raise ValueError(f"TitanStepHandler launches one step at a time, got {list(keys)}")
        return keys[0]

    @staticmethod
    def _attempt(context: StepHandlerContext, step_key: str) -> int:
        known = context.execute_step_args.known_state
        return known.get_retry_state().get_attempt_count(step_key) if known else 0

    def _ref(self, context: StepHandlerContext, step_key: str, attempt: int) -> str:
        run_id = context.execute_step_args.run_id
        cached = self._refs.get((run_id, step_key, attempt))
        if cached:
            return cached
        base = naming.step_run_id(run_id, step_key, attempt)
        # A run worker that restarted does not remember re-launches ("-rN"): the newest one wins.
        relaunches = [
            r.id
            for r in self.client.list_runs(agent_run_id=naming.group_id(run_id))
            if r.id.startswith(base + "-r") and r.id[len(base) + 2 :].isdigit()
        ]
        newest = max(relaunches, key=lambda rid: int(rid.rsplit("-r", 1)[1]), default=base)
        return f"{newest}/{naming.STEP_JOB_ID}"

    # ------------------------------------------------------------------ StepHandler

    def launch_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        context = step_handler_context
        args = context.execute_step_args
        step_key = self._step_key(context)
        attempt = self._attempt(context, step_key)
        placement = placement_for_step(step_key, context.step_tags[step_key], self._settings.placement)
        env = dict(self._settings.env)
        env.update({item["name"]: item["value"] for item in args.get_command_env()})
        env[CAPTURE_ENV] = CAPTURE_TITAN
        job_name = context.dagster_run.job_name
        submission = remote.submit(
            self.client,
            run_id=naming.step_run_id(args.run_id, step_key, attempt),
            job_id=naming.STEP_JOB_ID,
            name=f"{job_name}:{step_key}",
            command=STEP_COMMAND,
            env=env,
            placement=placement,
            preload=remote.WARM_PACKAGES if self._settings.warm else (),
            group=naming.group_id(args.run_id),
            labels={
                naming.LABEL_KIND: "step",
                naming.LABEL_RUN_ID: args.run_id,
                naming.LABEL_JOB: job_name,
                naming.LABEL_STEP_KEY: step_key,
                naming.LABEL_ATTEMPT: str(attempt),
            },
        )
        self._refs[(args.run_id, step_key, attempt)] = submission.ref
        self._latest[(args.run_id, step_key)] = submission.ref
        step_context = context.get_step_context(step_key)
        verb = "Re-attached to running" if submission.adopted else "Launched"
        yield DagsterEvent.step_worker_starting(
            step_context,
            message=f'{verb} step "{step_key}" (attempt {attempt + 1}) as Titan job {submission.ref}.',
            metadata={
                "Titan job": MetadataValue.text(submission.ref),
                "Titan master": MetadataValue.text(self.client.address),
                "Worker tags required": MetadataValue.text(", ".join(placement.requirement) or "none"),
                "Priority": MetadataValue.int(placement.priority),
                "Resources held": MetadataValue.text(placement.describe_resources()),
                "Logs": MetadataValue.text(f"titan-runtime logs {submission.ref} --follow"),
            },
        )
        unplaceable = self._nobody_can_run(placement)
        if unplaceable:
            yield DagsterEvent.engine_event(step_context, unplaceable, EngineEventData())

    def check_step_health(self, step_handler_context: StepHandlerContext) -> CheckStepHealthResult:
        context = step_handler_context
        step_key = self._step_key(context)
        attempt = self._attempt(context, step_key)
        ref = self._ref(context, step_key, attempt)
        try:
            record = self.client.get_job(ref)
        except JobNotFound:
            return CheckStepHealthResult.unhealthy(
                f"the Titan master at {self.client.address} has no job {ref}: it was never accepted, "
                "or the master lost its state (an in-memory store that restarted)"
            )
        if not record.terminal:
            if record.state == "RUNNING" and ref not in self._announced:
                self._announced.add(ref)
                pid = record.attempts[-1].pid if record.attempts else 0
                DagsterEvent.engine_event(
                    context.get_step_context(step_key),
                    f"Titan job {ref} is running on worker {record.worker_name} (pid {pid}).",
                    EngineEventData(
                        metadata={
                            "Titan job": MetadataValue.text(ref),
                            "Titan worker": MetadataValue.text(record.worker_name),
                            "pid": MetadataValue.int(pid),
                        }
                    ),
                )
            return CheckStepHealthResult.healthy()
        if record.state == "SUCCEEDED" or self._outcome_recorded(context, step_key, attempt):
            # The step reported its own outcome; the executor reads it from the event log.
            return CheckStepHealthResult.healthy()
        reason = remote.describe_failure(self.client, record)
        orphans = self._cancel_pipes_jobs(context.execute_step_args.run_id, step_key, attempt)
        if orphans:
            reason += f"\nCancelled the Pipes job(s) it had started: {', '.join(orphans)}"
        return CheckStepHealthResult.unhealthy(reason)

    def terminate_step(self, step_handler_context: StepHandlerContext) -> Iterator[DagsterEvent]:
        context = step_handler_context
        step_key = self._step_key(context)
        attempt = self._attempt(context, step_key)
        ref = self._ref(context, step_key, attempt)
        try:
            cancelled = self.client.cancel(ref, wait=True, timeout=self._settings.cancel_timeout)
        except JobNotFound:
            cancelled = []
        cancelled += self._cancel_pipes_jobs(context.execute_step_args.run_id, step_key, attempt)
        message = (
            f"Cancelled Titan job {', '.join(cancelled)}: each process group got SIGTERM, then "
            "SIGKILL after the worker's grace period, and is gone."
            if cancelled
            else f"Titan job {ref} had already ended; nothing to cancel."
        )
        yield DagsterEvent.engine_event(
            context.get_step_context(step_key),
            message,
            EngineEventData(metadata={"Titan job": MetadataValue.text(ref)}),
        )

    def explain_failure(self, step_context: Any, run_id: str, step_key: str, failure_message: str) -> None:
        """After a step failed: if its process also ended badly on Titan (killed by a Titan timeout,
        OOM, a crash after reporting), record why, with the tail of its output, next to the failure.

        A Titan timeout reaches the step as SIGTERM, which Dagster reports only as an interrupt;
        this event is where the user reads "timed out after 600s".
        """
        ref = self._latest.get((run_id, step_key))
        if not ref or ref in failure_message:  # unknown, or the failure already says it (health check)
            return
        try:
            record = self.client.wait(ref, timeout=EXPLAIN_WAIT)
        except (TimeoutError, TitanError):
            return  # still exiting, or the master is away: the failure stands on its own
        if record.state in ("SUCCEEDED", "CANCELLED"):
            return  # an ordinary step failure, or a termination (terminate_step logged it)
        DagsterEvent.engine_event(
            step_context,
            f"The step's process ended badly too: {remote.describe_failure(self.client, record)}",
            EngineEventData(metadata={"Titan job": MetadataValue.text(ref)}),
        )

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _outcome_recorded(context: StepHandlerContext, step_key: str, attempt: int) -> bool:
        """Whether attempt `attempt` of the step already wrote its success, failure or retry request."""
        records = context.instance.all_logs(context.execute_step_args.run_id, of_type=ATTEMPT_OUTCOMES)
        ended = sum(1 for r in records if r.dagster_event and r.dagster_event.step_key == step_key)
        return ended > attempt

    def _cancel_pipes_jobs(self, run_id: str, step_key: str, attempt: int) -> list[str]:
        """Cancel the Titan jobs a step attempt started through PipesTitanClient.

        The step cannot always do it itself: inside a Titan job its token may act on its own
        Titan run only, and a step that crashed or was killed does nothing at all.
        """
        cancelled: list[str] = []
        for titan_run in self.client.list_runs(agent_run_id=naming.group_id(run_id)):
            labels = titan_run.labels
            if (
                not titan_run.terminal
                and labels.get(naming.LABEL_KIND) == "pipes"
                and labels.get(naming.LABEL_STEP_KEY) == step_key
                and labels.get(naming.LABEL_ATTEMPT) == str(attempt)
            ):
                cancelled += self.client.cancel(
                    titan_run.id, wait=True, timeout=self._settings.cancel_timeout
                )
        return cancelled

    def _nobody_can_run(self, placement: Placement) -> str:
        """A warning when no connected worker could ever run the step (it then waits in Titan's queue)."""
        try:
            workers = [w for w in self.client.list_workers() if w.state == "ALIVE"]
        except Exception:  # the launch already succeeded; this is advice only
            return ""
        return why_unplaceable(placement, workers)


def _plural(amount: float, unit: str) -> str:
    return f"{amount:g} {unit}{'' if amount == 1 else 's'}"


@dataclass(frozen=True)
class _Quantity:
    """One thing a step may ask for and a worker offers, as Titan's placement counts it."""

    name: str
    asked: Callable[[Placement], float]
    offered: Callable[[WorkerRecord], float]  # by an idle worker
    show: Callable[[float], str]
    flag: str  # the `titan-runtime worker` option that sets it


_QUANTITIES = (
    # One slot every worker has: only more is worth a word.
    _Quantity(
        "slots",
        lambda p: p.slots if p.slots > 1 else 0,
        lambda w: w.slots,
        lambda n: _plural(n, "slot"),
        "--slots",
    ),
    _Quantity("CPUs", lambda p: p.cpus, lambda w: w.cpu_count, lambda n: _plural(n, "CPU"), "--cpus"),
    _Quantity(
        "memory",
        lambda p: p.memory_mb,
        lambda w: w.memory_bytes >> 20,
        lambda n: f"{format_memory(int(n))} of memory",
        "--memory",
    ),
    _Quantity("GPUs", lambda p: p.gpus, lambda w: len(w.gpus), lambda n: _plural(n, "GPU"), "--gpus"),
)


def why_unplaceable(placement: Placement, workers: Sequence[WorkerRecord]) -> str:
    """Why none of `workers` (the connected ones) could ever run a job placed so, or "" if one could.

    It names the first thing nobody has: the worker tags, then each quantity on its own (a
    worker's slots, cpu_count, memory_bytes and number of GPUs, counted as Titan's placement
    counts them on an idle worker), then all of them together on one worker. The step is not
    failed for it: a worker that has them may yet connect, and Titan keeps the step queued.
    """
    needed = set(placement.requirement)
    tagged = [w for w in workers if needed <= set(w.tags)]
    tags = f"tags {sorted(needed)}" if needed else "any tags"
    waits = "the step waits in Titan's queue until one connects"
    if not tagged:
        return (
            f"No connected Titan worker has {tags}; {waits} (start one with "
            f"`titan-runtime worker --tags {','.join(sorted(needed)) or '...'}`)."
        )
    among = f" with {tags}" if needed else ""
    asked = [(q, q.asked(placement)) for q in _QUANTITIES if q.asked(placement)]
    for quantity, amount in asked:
        most = max(quantity.offered(w) for w in tagged)
        if most < amount:
            return (
                f"No connected Titan worker{among} has at least {quantity.show(amount)} (the most any has: "
                f"{quantity.show(most)}); {waits} (a worker offers {quantity.name} with "
                f"`titan-runtime worker {quantity.flag} ...`)."
            )
    if not any(all(q.offered(w) >= amount for q, amount in asked) for w in tagged):
        wanted = ", ".join(q.show(amount) for q, amount in asked)
        return f"No connected Titan worker{among} has {wanted} at once; {waits}."
    return ""
