"""`PipesTitanClient`: an asset or op runs a script on Titan and hears back through Dagster Pipes.

The external process needs only `dagster-pipes` (no Dagster, no access to Dagster's storage):

    # train.py, run on a Titan worker
    from dagster_pipes import open_dagster_pipes
    with open_dagster_pipes() as pipes:
        pipes.log.info("training")
        pipes.report_asset_materialization(metadata={"accuracy": 0.93})

The context goes in through the job's environment (`PipesEnvContextInjector`); messages come
back as JSON lines on the job's stderr, which the Titan worker ships to the master like any other
output. `PipesTitanLogsMessageReader` follows that log live: a line that is a Pipes message goes to
Dagster, every other line is forwarded to this process's stdout/stderr (so it lands in the step's
compute log). The call returns when the Titan job has ended and its whole log was read; a job that
did not succeed raises `DagsterPipesExecutionError` with the tail of its output; an interrupted
step cancels the Titan job.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from dagster import (
    AssetExecutionContext,
    OpExecutionContext,
    PipesClient,
    PipesClientCompletedInvocation,
    PipesContextInjector,
    PipesEnvContextInjector,
    PipesMessageHandler,
    PipesMessageReader,
    open_pipes_session,
)
from dagster_pipes import PIPES_PROTOCOL_VERSION_FIELD, PipesDefaultMessageWriter, PipesExtras, PipesParams

from titan_dagster import naming, remote
from titan_dagster._compat import DagsterExecutionInterruptedError, DagsterPipesExecutionError
from titan_dagster.errors import TitanConfigError
from titan_dagster.placement import (
    Placement,
    parse_env,
    parse_priority,
    parse_requirement,
    parse_resources,
    parse_timeout,
)
from titan_runtime import TitanClient, TitanError

#: A Pipes message longer than this is given up on (Titan splits lines over 64 KiB; we rejoin them).
MAX_MESSAGE_CHARS = 64 * 1024 * 1024
#: The Titan worker cuts output lines longer than this many bytes (titan_runtime.worker.spool.MAX_LINE).
TITAN_MAX_LINE = 64 * 1024
#: After the job ended, how long to wait for the log reader to finish the last lines.
DRAIN_TIMEOUT = 60.0


class PipesTitanLogsMessageReader(PipesMessageReader):
    """Reads Pipes messages from a Titan job's stderr while it runs; forwards other lines.

    The external process writes messages with dagster_pipes' default writer in `stdio` mode
    (the params this reader hands out), one JSON object per line.
    """

    def __init__(self, forward_stdio: bool = True) -> None:
        self._forward = forward_stdio
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._handler: PipesMessageHandler | None = None

    @contextmanager
    def read_messages(self, handler: PipesMessageHandler) -> Iterator[PipesParams]:
        self._handler = handler
        self._thread = None
        self._error = None
        try:
            yield {PipesDefaultMessageWriter.STDIO_KEY: PipesDefaultMessageWriter.STDERR}
        finally:
            self.join(DRAIN_TIMEOUT)

    def follow(self, client: TitanClient, ref: str) -> None:
        """Start reading the job's log (until the job ends) in a background thread."""
        assert self._handler is not None, "follow() is called inside read_messages()"
        self._thread = threading.Thread(
            target=self._read, args=(client, ref, self._handler), name=f"titan-pipes-{ref}", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float) -> None:
        thread = self._thread
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive():
            raise DagsterPipesExecutionError(
                f"the log of the Titan job was still being read {timeout:g}s after the job ended"
            )
        if self._error is not None:
            raise DagsterPipesExecutionError(
                f"reading the Titan job's log failed: {self._error}"
            ) from self._error

    def _read(self, client: TitanClient, ref: str, handler: PipesMessageHandler) -> None:
        pending = ""  # a message split by Titan's 64 KiB line limit, being rejoined
        try:
            for line in client.follow_logs(ref):
                text = str(line)
                if line.stream == "stderr" and (pending or _looks_like_message(text)):
                    pending += text
                    message = _parse_message(pending)
                    if message is not None:
                        handler.handle_message(message)
                        pending = ""
                    elif len(pending) > MAX_MESSAGE_CHARS or not _may_continue(pending, text):
                        self._forward_line(pending, "stderr")
                        pending = ""
                    continue
                self._forward_line(text, line.stream)
            if pending:
                self._forward_line(pending, "stderr")
        except BaseException as exc:  # surfaced by join() in the orchestrating thread
            self._error = exc

    def _forward_line(self, text: str, stream: str) -> None:
        if self._forward:
            target = sys.stderr if stream == "stderr" else sys.stdout
            target.write(text + "\n")
            target.flush()

    def no_messages_debug_text(self) -> str:
        return (
            "Read Pipes messages from the Titan job's stderr. The external process must call "
            "dagster_pipes.open_dagster_pipes() with the default message writer (it reads "
            "DAGSTER_PIPES_MESSAGES from its environment) and must have dagster-pipes installed."
        )


def _looks_like_message(text: str) -> bool:
    return text.startswith("{") and PIPES_PROTOCOL_VERSION_FIELD in text[:200]


def _may_continue(pending: str, piece: str) -> bool:
    """Whether the next line may complete a message that does not parse yet: the last piece was cut
    at Titan's line limit (Pipes writes ASCII JSON, so characters are bytes), or it is unfinished."""
    return len(piece.encode()) >= TITAN_MAX_LINE or not pending.rstrip().endswith("}")


def _parse_message(text: str) -> dict[str, Any] | None:
    try:
        message = json.loads(text)
    except ValueError:
        return None
    return message if isinstance(message, dict) and PIPES_PROTOCOL_VERSION_FIELD in message else None


class PipesTitanClient(PipesClient):
    """Runs an external command or script as a Titan job inside a Dagster Pipes session.

    Args:
        address, token: the Titan master and its token (None: TITAN_ADDRESS / TITAN_TOKEN / data dir).
        client: an existing TitanClient to use instead of address/token.
        env: environment variables for every job this client starts.
        requirement: worker tag(s) the jobs need ("GPU", "GPU,cuda12").
        priority, timeout: Titan priority and timeout in seconds (None: no timeout).
        resources: what each job holds on its worker, as the `titan/resources` op tag takes it:
            {"slots": 2, "cpus": 2, "memory": "8G", "gpus": 1} or "cpus=2,memory=8G,gpus=1"
            (a GPU job sees its devices in CUDA_VISIBLE_DEVICES).
        context_injector: how the Pipes context reaches the job (default: environment variables).
        forward_stdio: print the job's non-Pipes output in this process (so it is in the step's logs).
    """

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        *,
        client: TitanClient | None = None,
        env: Mapping[str, str] | None = None,
        requirement: str | Sequence[str] | None = None,
        priority: int = 1,
        timeout: float | None = None,
        resources: str | Mapping[str, Any] | None = None,
        context_injector: PipesContextInjector | None = None,
        forward_stdio: bool = True,
        cancel_timeout: float = 60.0,
    ) -> None:
        where = "PipesTitanClient"
        self._address = address
        self._token = token
        self._client = client
        self.env = parse_env(env, f"{where}, env")
        self.placement = Placement(
            requirement=parse_requirement(requirement, f"{where}, requirement"),
            priority=parse_priority(priority, f"{where}, priority"),
            timeout=parse_timeout(timeout, f"{where}, timeout"),
        ).with_resources(parse_resources(resources, f"{where}, resources"))
        self.context_injector = context_injector or PipesEnvContextInjector()
        self.forward_stdio = forward_stdio
        self.cancel_timeout = cancel_timeout
        self._invocations: dict[tuple[str, str, int], int] = {}
        self._lock = threading.Lock()

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    @property
    def client(self) -> TitanClient:
        if self._client is None:
            self._client = remote.connect(self._address, self._token)
        return self._client

    def run(  # type: ignore[override]
        self,
        *,
        context: OpExecutionContext | AssetExecutionContext,
        command: Sequence[str] | None = None,
        script: str | None = None,
        args: Sequence[str] | None = None,
        extras: PipesExtras | None = None,
        env: Mapping[str, str] | None = None,
        requirement: str | Sequence[str] | None = None,
        priority: int | None = None,
        timeout: float | None = None,
        resources: str | Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> PipesClientCompletedInvocation:
        """Run `command` (a list; "{python}" is the worker's interpreter) or `script` (a local file,
        uploaded to Titan) on a worker, and return what it reported through Pipes. `requirement`
        adds worker tags to the client's; `priority`, `timeout` and `resources` replace its own.

        Raises DagsterPipesExecutionError when the Titan job does not succeed (its message holds the
        job's state, reason and the tail of its output). Returns only when the job ended.
        """
        if (command is None) == (script is None):
            raise TitanConfigError(
                "PipesTitanClient.run: give either command=[...] or script='path.py', not both"
            )
        placement = self._placement(requirement, priority, timeout, resources)
        reader = PipesTitanLogsMessageReader(forward_stdio=self.forward_stdio)
        with open_pipes_session(
            context=context, context_injector=self.context_injector, message_reader=reader, extras=extras
        ) as session:
            job_env = {
                **self.env,
                **parse_env(env, "PipesTitanClient.run, env"),
                **session.get_bootstrap_env_vars(),
            }
            submission = self._submit(context, command, script, args, job_env, placement, name)
            context.log.info(f"[pipes] running on Titan as job {submission.ref}")
            reader.follow(self.client, submission.ref)
            record = self._wait(context, submission.ref)
            if record.state != "SUCCEEDED":
                raise DagsterPipesExecutionError(remote.describe_failure(self.client, record))
        return PipesClientCompletedInvocation(session)

    # ------------------------------------------------------------------ helpers

    def _placement(self, requirement: Any, priority: Any, timeout: Any, resources: Any) -> Placement:
        where = "PipesTitanClient.run"
        placement = self.placement
        if requirement is not None:
            extra = parse_requirement(requirement, f"{where}, requirement")
            merged = placement.requirement + tuple(t for t in extra if t not in placement.requirement)
            placement = replace(placement, requirement=merged)
        if priority is not None:
            placement = replace(placement, priority=parse_priority(priority, where))
        if timeout is not None:
            placement = replace(placement, timeout=parse_timeout(timeout, where))
        if resources is not None:
            placement = placement.with_resources(parse_resources(resources, f"{where}, resources"))
        return placement

    def _submit(
        self,
        context: OpExecutionContext | AssetExecutionContext,
        command: Sequence[str] | None,
        script: str | None,
        args: Sequence[str] | None,
        env: dict[str, str],
        placement: Placement,
        name: str | None,
    ) -> remote.Submission:
        op_context = _op_context(context)
        run_id = op_context.run_id
        step_key = op_context.get_step_execution_context().step.key
        attempt = op_context.retry_number
        with self._lock:
            key = (run_id, step_key, attempt)
            self._invocations[key] = invocation = self._invocations.get(key, 0) + 1
        label = name or (script and script.rsplit("/", 1)[-1]) or (command[0] if command else "pipes")
        job_id = naming.job_id_for(label.replace("{python}", "python"))
        return remote.submit(
            self.client,
            run_id=naming.pipes_run_id(run_id, step_key, attempt, invocation),
            job_id=job_id,
            name=f"{op_context.job_name}:{step_key}:pipes",
            command=command,
            script=script,
            args=args,
            env=env,
            placement=placement,
            group=naming.group_id(run_id),
            labels={
                naming.LABEL_KIND: "pipes",
                naming.LABEL_RUN_ID: run_id,
                naming.LABEL_JOB: op_context.job_name,
                naming.LABEL_STEP_KEY: step_key,
                naming.LABEL_ATTEMPT: str(attempt),
            },
        )

    def _wait(self, context: OpExecutionContext | AssetExecutionContext, ref: str) -> Any:
        """Block until the job ended; an interrupted step (run terminated) cancels it first."""
        try:
            return self.client.wait(ref)
        except (DagsterExecutionInterruptedError, KeyboardInterrupt):
            context.log.info(f"[pipes] interrupted: cancelling Titan job {ref}")
            try:
                self.client.cancel(ref, wait=True, timeout=self.cancel_timeout)
            except TitanError as exc:
                context.log.warning(f"[pipes] could not cancel Titan job {ref}: {exc}")
            raise


def _op_context(context: OpExecutionContext | AssetExecutionContext) -> OpExecutionContext:
    return context.op_execution_context if isinstance(context, AssetExecutionContext) else context
