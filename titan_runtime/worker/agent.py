"""The worker agent: one outbound stream to the master, and the attempts it runs.

The agent dials out (so a worker behind NAT or a firewall needs no inbound port), says hello
with everything it still holds, and from then on keeps the master in sync: starts, log bytes,
exits, heartbeats. The state of each attempt lives here, not in the stream, so when the master
goes away the processes keep running, their output keeps spooling to disk, and the next hello
reports it all again; the master answers with what it already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.proto import titan_pb2_grpc as rpc
from titan_runtime.version import __version__
from titan_runtime.worker import capabilities
from titan_runtime.worker.cache import ArtifactCache
from titan_runtime.worker.process import JobProcess
from titan_runtime.worker.project import unpack
from titan_runtime.worker.spool import Spool

log = logging.getLogger("titan.worker")

MAX_RESULT_BYTES = 1024 * 1024
LOG_CHUNK = 256 * 1024
MAX_MESSAGE_LOG_BYTES = 4 * 1024 * 1024  # log bytes in one message, to stay far below gRPC's limit
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 5000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


class FatalWorkerError(Exception):
    """Retrying cannot help (a wrong token); the worker exits with this message."""


@dataclass
class WorkerConfig:
    master: str
    token: str
    name: str
    work_dir: Path
    tags: frozenset[str] = frozenset()
    slots: int = 1
    kill_grace: float = 10.0
    keep_workspaces: bool = False
    worker_id: str = ""

    def __post_init__(self) -> None:
        if not self.worker_id:
            self.worker_id = f"{self.name}-{os.urandom(3).hex()}"


@dataclass
class Execution:
    """One attempt on this worker, from assignment until the master acknowledged its end."""

    assignment: pb.Assignment
    spool: Spool
    workspace: Path
    process: JobProcess | None = None
    pid: int = 0
    started_at: float = 0.0
    exit: pb.AttemptExit | None = None
    cancel: tuple[str, float] | None = None  # (reason, grace) asked before the process started
    superseded: bool = False
    acked: bool = False
    task: asyncio.Task[None] | None = None
    # Per connection: what this connection's master has been told.
    sent: int = 0
    started_sent: bool = False
    finish_sent: bool = False

    @property
    def attempt_id(self) -> str:
        return self.assignment.attempt_id


@dataclass
class _Connection:
    call: grpc.aio.StreamStreamCall
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    heartbeat_interval: float = 1.0


class WorkerAgent:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.executions: dict[str, Execution] = {}
        self._stopping = asyncio.Event()
        self._conn: _Connection | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: rpc.TitanStub | None = None
        self._metadata = (("authorization", f"Bearer {config.token}"),)
        self._sampler = capabilities.LoadSampler()
        self._gpus = capabilities.detect_gpus()
        self.tags = set(config.tags) | ({"GPU"} if self._gpus else set())
        work = config.work_dir
        self._spool_dir = work / "spool"
        self._ws_dir = work / "work"
        self.cache = ArtifactCache(work / "cache", self._fetch_artifact)

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Connect, reconnect with backoff and jitter, until asked to stop; then stop the attempts."""
        self._ws_dir.mkdir(parents=True, exist_ok=True)
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        self._channel = grpc.aio.insecure_channel(self.config.master, options=CHANNEL_OPTIONS)
        self._stub = rpc.TitanStub(self._channel)
        link = rpc.WorkerLinkStub(self._channel)
        backoff = 0.1
        try:
            while not self._stopping.is_set():
                connected = await self._session(link)
                if self._stopping.is_set():
                    break
                backoff = 0.1 if connected else min(backoff * 2, 5.0)
                delay = backoff * random.uniform(0.5, 1.5)
                if not connected:
                    log.warning("master at %s unreachable; retrying in %.1fs", self.config.master, delay)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            await self._stop_attempts()
            await self._channel.close()

    async def _stop_attempts(self) -> None:
        """SIGTERM every attempt's process group (SIGKILL after the grace period) and wait for them."""
        for ex in self.executions.values():
            self._cancel(ex, "worker stopping", self.config.kill_grace)
        tasks = [ex.task for ex in self.executions.values() if ex.task is not None and not ex.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.config.kill_grace + 5)

    # ------------------------------------------------------------------ one connection

    async def _session(self, link: rpc.WorkerLinkStub) -> bool:
        """Run one stream until it ends or the worker stops. Returns whether the master answered."""
        call = link.Connect(metadata=self._metadata)
        try:
            await call.write(pb.WorkerMessage(hello=self._hello()))
            first = await call.read()
        except grpc.aio.AioRpcError as exc:
            self._check_fatal(exc)
            return False
        if first is grpc.aio.EOF or not first.HasField("welcome"):
            if await call.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise FatalWorkerError(await call.details())
            return False
        conn = _Connection(call, heartbeat_interval=first.welcome.heartbeat_interval or 1.0)
        self._apply_welcome(first.welcome)
        self._conn = conn
        log.info(
            "connected to master %s as %s (%s)", self.config.master, self.config.name, self.config.worker_id
        )
        sender = asyncio.create_task(self._send_loop(conn))
        reader = asyncio.create_task(self._read_loop(conn))
        stop_waiter = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({sender, reader, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
            if stop_waiter in done and not sender.done() and not reader.done():
                # Still connected: stop the attempts now so that their ends reach the master,
                # which requeues them elsewhere as handed back, not failed.
                await self._stop_attempts()
                conn.wake.set()
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline and not sender.done() and self._unreported():
                    await asyncio.sleep(0.01)
        finally:
            for task in (sender, reader, stop_waiter):
                task.cancel()
            self._conn = None
            call.cancel()
        if not self._stopping.is_set():
            log.warning("lost the connection to the master at %s", self.config.master)
        return True

    def _unreported(self) -> bool:
        return any(ex.exit is not None and not ex.finish_sent for ex in self.executions.values())

    def _check_fatal(self, exc: grpc.aio.AioRpcError) -> None:
        if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            raise FatalWorkerError(exc.details() or "the master refused this worker's token")

    def _hello(self) -> pb.WorkerHello:
        held = []
        for ex in self.executions.values():
            if ex.superseded:
                continue
            held.append(
                pb.HeldAttempt(
                    attempt_id=ex.attempt_id,
                    pid=ex.pid,
                    started_at=ex.started_at,
                    finished=ex.exit is not None,
                    exit=ex.exit,
                    log_size=ex.spool.size,
                )
            )
        return pb.WorkerHello(
            worker_id=self.config.worker_id,
            name=self.config.name,
            host=capabilities.hostname(),
            pid=os.getpid(),
            tags=sorted(self.tags),
            slots=self.config.slots,
            cpu_count=capabilities.cpu_count(),
            memory_bytes=capabilities.memory_bytes(),
            gpus=self._gpus,
            version=__version__,
            held=held,
            draining=self._stopping.is_set(),
        )

    def _apply_welcome(self, welcome: pb.Welcome) -> None:
        for attempt_id in welcome.superseded:
            ex = self.executions.pop(attempt_id, None)
            if ex is not None:
                log.info("attempt %s was superseded while we were away; stopping it", attempt_id)
                ex.superseded = True
                if ex.process is not None:
                    ex.process.kill_now()
                if ex.task is None or ex.task.done():
                    ex.spool.remove()
        for ex in self.executions.values():
            ex.sent = welcome.log_offsets.get(ex.attempt_id, 0)
            ex.started_sent = bool(ex.pid)
            ex.finish_sent = ex.exit is not None

    async def _read_loop(self, conn: _Connection) -> None:
        while True:
            message = await conn.call.read()
            if message is grpc.aio.EOF:
                return
            for assignment in message.assign:
                self._assign(assignment)
            for cancel in message.cancel:
                ex = self.executions.get(cancel.attempt_id)
                if ex is not None:
                    self._cancel(ex, cancel.reason or "cancelled", cancel.grace)
            for attempt_id in message.acks:
                ex = self.executions.get(attempt_id)
                if ex is not None:
                    ex.acked = True
                    self._forget_if_done(ex)

    def _pending(self, heartbeat: bool) -> pb.WorkerMessage | None:
        """Everything the master has not been told yet, as one message (None when there is nothing)."""
        message = pb.WorkerMessage()
        budget = MAX_MESSAGE_LOG_BYTES
        for ex in list(self.executions.values()):
            if ex.superseded:
                continue
            if ex.pid and not ex.started_sent:
                ex.started_sent = True
                message.started.append(
                    pb.AttemptStarted(attempt_id=ex.attempt_id, pid=ex.pid, started_at=ex.started_at)
                )
            while ex.sent < ex.spool.size and budget > 0:
                data = ex.spool.read(ex.sent, min(LOG_CHUNK, budget))
                if not data:
                    break
                message.logs.append(pb.LogData(attempt_id=ex.attempt_id, offset=ex.sent, data=data))
                ex.sent += len(data)
                budget -= len(data)
            if ex.exit is not None and not ex.finish_sent and ex.sent >= ex.spool.size:
                ex.finish_sent = True
                message.finished.append(pb.AttemptFinished(attempt_id=ex.attempt_id, exit=ex.exit))
            self._forget_if_done(ex)
        if heartbeat:
            cpu, mem = self._sampler.sample()
            running = sum(1 for ex in self.executions.values() if ex.exit is None)
            message.heartbeat.CopyFrom(pb.Heartbeat(cpu_percent=cpu, memory_percent=mem, running=running))
        if not (message.started or message.logs or message.finished or heartbeat):
            return None
        return message

    async def _send_loop(self, conn: _Connection) -> None:
        next_beat = 0.0
        while True:
            conn.wake.clear()
            now = time.monotonic()
            beat = now >= next_beat
            if beat:
                next_beat = now + conn.heartbeat_interval
            message = self._pending(beat)
            if message is not None:
                await conn.call.write(message)
                if len(message.logs) and sum(len(d.data) for d in message.logs) >= MAX_MESSAGE_LOG_BYTES:
                    continue  # more output is waiting
            await wait_event(conn.wake, max(0.0, next_beat - time.monotonic()))

    def _wake(self) -> None:
        if self._conn is not None:
            self._conn.wake.set()

    def _forget_if_done(self, ex: Execution) -> None:
        if ex.acked and ex.exit is not None and ex.sent >= ex.spool.size:
            self.executions.pop(ex.attempt_id, None)
            ex.spool.remove()

    # ------------------------------------------------------------------ attempts

    def _assign(self, assignment: pb.Assignment) -> None:
        if assignment.attempt_id in self.executions:
            return
        if self._stopping.is_set():
            return  # the master learns from the hello/stream end that we never started it
        ex = Execution(
            assignment=assignment,
            spool=Spool(self._spool_dir / f"{assignment.attempt_id}.log"),
            workspace=self._ws_dir / assignment.attempt_id,
        )
        self.executions[ex.attempt_id] = ex
        ex.task = asyncio.create_task(self._execute(ex))

    def _cancel(self, ex: Execution, reason: str, grace: float) -> None:
        if ex.process is not None:
            ex.process.terminate("cancelled", reason, grace)
        elif ex.exit is None:
            ex.cancel = (reason, grace)

    async def _execute(self, ex: Execution) -> None:
        a = ex.assignment
        spec = a.spec
        timer: asyncio.TimerHandle | None = None
        try:
            ex.workspace.mkdir(parents=True, exist_ok=True)
            argv = await self._argv(ex)
            env = self._env(ex)
            if ex.cancel is not None:
                ex.exit = pb.AttemptExit(outcome="cancelled", reason=ex.cancel[0])
                return
            process = JobProcess(argv, ex.workspace, env, ex.spool, self._wake)
            ex.pid = process.start()
            ex.process = process
            ex.started_at = time.time()
            self._wake()
            if spec.timeout > 0:
                timer = asyncio.get_running_loop().call_later(
                    spec.timeout,
                    process.terminate,
                    "timeout",
                    f"timed out after {spec.timeout:g}s",
                    self.config.kill_grace,
                )
            done = await process.wait()
            outcome, reason = done.outcome, done.reason
            result_json = ""
            if outcome == "succeeded":
                result_json, problem = self._read_result(ex)
                if problem:
                    outcome, reason = "failed", problem
                    ex.spool.note(f"titan: {problem}")
            ex.exit = pb.AttemptExit(
                outcome=outcome,
                exit_code=done.exit_code,
                signal=done.signal,
                reason=reason,
                has_result=bool(result_json),
                result_json=result_json,
            )
        except Exception as exc:
            reason = f"cannot start: {exc}"
            ex.spool.note(f"titan: {reason}")
            ex.exit = pb.AttemptExit(outcome="error", reason=reason)
        finally:
            if timer is not None:
                timer.cancel()
            if ex.exit is None:  # cancelled task (worker shutting down)
                ex.exit = pb.AttemptExit(outcome="cancelled", reason="worker stopping")
            ex.exit.log_size = ex.spool.size
            ex.exit.ended_at = time.time()
            ex.spool.close()
            if not self.config.keep_workspaces:
                shutil.rmtree(ex.workspace, ignore_errors=True)
            if ex.superseded:
                ex.spool.remove()
            self._wake()

    async def _argv(self, ex: Execution) -> list[str]:
        spec = ex.assignment.spec
        script: Path | None = None
        if spec.project_hash:
            archive = await self.cache.get(spec.project_hash)
            await asyncio.get_running_loop().run_in_executor(None, unpack, archive, ex.workspace)
            if spec.script_name:
                script = (ex.workspace / spec.script_name).resolve()
                if ex.workspace.resolve() not in script.parents or not script.is_file():
                    raise ValueError(f"script {spec.script_name!r} is not in the project")
        elif spec.script_hash:
            cached = await self.cache.get(spec.script_hash)
            name = os.path.basename(spec.script_name) or "script"
            if name in (".", ".."):
                name = "script"
            script = ex.workspace / name
            try:
                os.link(cached, script)
            except OSError:
                shutil.copy2(cached, script)
        if script is not None:
            name = script.name
            if name.endswith(".py"):
                head = [sys.executable, "-u", str(script)]
            elif name.endswith(".sh"):
                head = ["bash", str(script)]
            else:
                head = [str(script)]
            return [*head, *spec.args]
        if not spec.command:
            raise ValueError("the job has neither a script nor a command")
        return [expand(arg) for arg in (*spec.command, *spec.args)]

    def _env(self, ex: Execution) -> dict[str, str]:
        a = ex.assignment
        env = {k: v for k, v in os.environ.items() if k != "TITAN_TOKEN"}
        env.update(a.spec.env)
        env.update(
            TITAN_RUN_ID=a.run_id,
            TITAN_JOB_ID=a.job_id,
            TITAN_ATTEMPT=str(a.attempt),
            TITAN_ATTEMPT_ID=a.attempt_id,
            TITAN_ADDRESS=self.config.master,
            TITAN_TOKEN=a.credential,
            TITAN_RESULT_FILE=str(self._result_path(ex)),
            TITAN_WORKSPACE=str(ex.workspace),
            TITAN_WORKER_ID=self.config.worker_id,
            TITAN_WORKER_NAME=self.config.name,
            TITAN_PARENTS=",".join(a.spec.parents),
            PYTHONUNBUFFERED="1",
        )
        return env

    def _result_path(self, ex: Execution) -> Path:
        # Beside the spool, not in the workspace: the job's working tree holds only its own files.
        return self._spool_dir / f"{ex.attempt_id}.result.json"

    def _read_result(self, ex: Execution) -> tuple[str, str]:
        """(result JSON, problem): the job's $TITAN_RESULT_FILE, checked for size and syntax."""
        path = self._result_path(ex)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return "", ""
        if size > MAX_RESULT_BYTES:
            return "", (
                f"the job's result is {size} bytes, over the 1 MB limit; "
                "publish large data with task.publish_artifact and return its name"
            )
        text = path.read_text(encoding="utf-8", errors="replace")
        path.unlink()
        try:
            json.loads(text)
        except ValueError as exc:
            return "", f"the job's result file is not valid JSON ({exc})"
        return text, ""

    async def _fetch_artifact(self, artifact_hash: str) -> AsyncIterator[bytes]:
        assert self._stub is not None
        async for chunk in self._stub.GetArtifact(
            pb.ArtifactRef(hash=artifact_hash), metadata=self._metadata
        ):
            yield chunk.data


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait for `event` or `timeout` seconds, with a timer rather than a task per wait."""
    if event.is_set():
        return
    timer = asyncio.get_running_loop().call_later(timeout, event.set)
    try:
        await event.wait()
    finally:
        timer.cancel()


def expand(arg: str) -> str:
    """Placeholders a command may use for what only the worker knows: `{python}` is its interpreter."""
    return sys.executable if arg == "{python}" else arg


def install_signal_handlers(agent: WorkerAgent) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.request_stop)


def exit_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGTERM us when the process that started us dies (`titan-runtime up`)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


async def run_worker(config: WorkerConfig) -> int:
    agent = WorkerAgent(config)
    install_signal_handlers(agent)
    try:
        await agent.run()
    except FatalWorkerError as exc:
        log.error("the master at %s refused this worker: %s", config.master, exc)
        return 2
    return 0
