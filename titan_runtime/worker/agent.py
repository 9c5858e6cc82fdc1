"""The worker agent: one outbound stream to the master, and the attempts it runs.

The agent dials out (so a worker behind NAT or a firewall needs no inbound port), says hello
with everything it still holds, and from then on keeps the master in sync: starts, log bytes,
exits, heartbeats. The state of each attempt lives here, not in the stream, so when the master
goes away the processes keep running, their output keeps spooling to disk, and the next hello
reports it all again; the master answers with what it already has.

Stopping: SIGTERM (or a drain from the master) stops taking work, lets running attempts finish
until a deadline, hands the rest back, says goodbye and exits 0. SIGINT (or a second signal)
hands everything back at once. A worker killed outright leaves its jobs to the reaper.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from titan_runtime.client.backoff import Backoff
from titan_runtime.core.worker_link import (
    HAND_BACK,
    Acked,
    Assigned,
    AttemptFacts,
    Cancelled,
    Forget,
    HandingBack,
    Instruction,
    Kill,
    Observed,
    ReportFinished,
    ReportHealthy,
    ReportStarted,
    SendOutput,
    StartProcess,
    Stop,
    StopAll,
    Welcomed,
    WorkerLink,
)
from titan_runtime.diskspace import DiskGuard
from titan_runtime.masters import MasterList, leader_named
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.proto import titan_pb2_grpc as rpc
from titan_runtime.tls import channel
from titan_runtime.version import __version__
from titan_runtime.worker import capabilities, launcher, memory
from titan_runtime.worker.cache import ArtifactCache
from titan_runtime.worker.execution import AttemptRunner, Execution
from titan_runtime.worker.fnpool import FunctionPool
from titan_runtime.worker.jobuser import JobDirs, JobUserError
from titan_runtime.worker.launcher import Launchers
from titan_runtime.worker.orphans import Orphans
from titan_runtime.worker.ports import PortLeases
from titan_runtime.worker.reaper import Reaper
from titan_runtime.worker.settings import (
    WorkerConfig as WorkerConfig,  # re-exported: its users import it here
)
from titan_runtime.worker.spool import Spool

log = logging.getLogger("titan.worker")

LOG_CHUNK = 256 * 1024
MAX_MESSAGE_LOG_BYTES = 4 * 1024 * 1024  # log bytes in one message, to stay far below gRPC's limit
GOODBYE_TIMEOUT = 3.0  # how long a stopping worker waits for the master to acknowledge its reports
# Reconnect delays double up to this (each spread over half to all of it), so a restarted master is
# found within half a second of listening (docs/performance.md: the restart with 100,000 jobs).
MAX_BACKOFF = 0.5
#: How often processes jobs left behind are looked for while jobs run (see orphans.py).
SWEEP_INTERVAL = 1.0


CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 5000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # gRPC's own reconnect backoff (1 s, growing to 120 s) would hide a restarted master from our
    # retry loop below for seconds: keep it on the same short scale as MAX_BACKOFF.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", int(MAX_BACKOFF * 1000)),
]


class FatalWorkerError(Exception):
    """Retrying cannot help (a wrong token); the worker exits with this message."""


@dataclass
class _Connection:
    call: grpc.aio.StreamStreamCall
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    heartbeat_interval: float = 1.0
    told_draining: bool = False
    closing: bool = False  # the goodbye is next: the sender flushes once more and returns


async def wait_event(event: asyncio.Event, timeout: float | None) -> None:
    """Wait for `event` or `timeout` seconds, with a timer rather than a task per wait."""
    if event.is_set():
        return
    timer = None if timeout is None else asyncio.get_running_loop().call_later(max(timeout, 0.0), event.set)
    try:
        await event.wait()
    finally:
        if timer is not None:
            timer.cancel()


class WorkerAgent:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.executions: dict[str, Execution] = {}
        self.link = WorkerLink()  # what the master has been told of each (core/worker_link.py)
        self._stop_now = False
        self._drain_deadline: float | None = None  # monotonic time; set once draining
        self._changed = asyncio.Event()  # an attempt ended or was forgotten, or a stop was asked
        self._conn: _Connection | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: rpc.TitanStub | None = None
        #: `--master A,B,...`: masters sharing one store, of which one leads (docs/ha.md).
        self._masters = MasterList(config.master)
        self._leader = ""  # the leader a standby named, to dial next
        self._metadata = (("authorization", f"Bearer {config.token}"),)
        self._sampler = capabilities.LoadSampler()
        # Before any child starts: under cgroup v2 the worker may move itself into a leaf cgroup,
        # which it can only do while it is alone in its own.
        self._memory = memory.enforcer()
        self._gpus = tuple(capabilities.detect_gpus()) if config.gpus is None else config.gpus
        self.tags = set(config.tags) | ({"GPU"} if self._gpus else set())
        work = config.work_dir
        self._spool_dir = work / "spool"
        self._ws_dir = work / "work"
        self.cache = ArtifactCache(work / "cache", self._fetch_artifact)
        self.reaper: Reaper | None = None
        self.orphans = Orphans(self._running_attempts)
        self._disk: DiskGuard | None = None
        self._runner: AttemptRunner | None = None
        self._jobs: JobDirs | None = None  # with a job user: where attempts live (see jobuser.py)
        self.host = config.advertise_host or capabilities.advertise_host(config.master.split(",")[0])

    # ------------------------------------------------------------------ stopping

    @property
    def draining(self) -> bool:
        """Taking no new work (the master is told so before anything is handed back)."""
        return self._drain_deadline is not None or self._stop_now

    def drain(self, deadline: float | None = None, reason: str = "SIGTERM") -> None:
        """Take no new work; let running attempts finish for up to `deadline` seconds."""
        seconds = self.config.drain_timeout if not deadline or deadline <= 0 else deadline
        until = time.monotonic() + seconds
        if self._drain_deadline is None:
            log.info("draining (%s): running attempts have %gs to finish", reason, seconds)
            self._drain_deadline = until
        else:
            self._drain_deadline = min(self._drain_deadline, until)
        self._signal_change()

    def stop_now(self) -> None:
        """Hand every attempt back at once and exit."""
        log.info("stopping: running attempts are handed back")
        self._stop_now = True
        self.link.handle(HandingBack())
        self._signal_change()

    def handle_signal(self, sig: int) -> None:
        if sig == signal.SIGTERM and not self.draining and not self._stop_now:
            self.drain(reason="SIGTERM")
        else:
            self.stop_now()

    def _done(self) -> bool:
        """True once the worker should leave: stopped, or drained (idle, or past its deadline)."""
        if self._stop_now:
            return True
        if self._drain_deadline is None:
            return False
        return not self.executions or time.monotonic() >= self._drain_deadline

    def _signal_change(self) -> None:
        self._changed.set()
        self._wake()

    async def _until_done(self) -> None:
        while not self._done():
            self._changed.clear()
            remaining = None if self._drain_deadline is None else self._drain_deadline - time.monotonic()
            await wait_event(self._changed, remaining)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Connect, reconnect with backoff and jitter, until stopped or drained."""
        self._ws_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._spool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._disk = DiskGuard(self.config.work_dir, self.config.min_free)
        if self.config.job_user is not None:
            self._jobs = JobDirs(self.config.job_user, self.config.name)
            log.info("jobs run as %s, in %s", self.config.job_user.name, self._jobs.root)
        if self._memory.why:
            log.info("job memory limits: %s (%s)", self._memory.mode, self._memory.why)
        self.reaper = Reaper()
        self.orphans.own(self.reaper.pid)
        self.orphans.watcher = self.reaper
        self._runner = AttemptRunner(
            master=self.config.master,
            worker_id=self.config.worker_id,
            worker_name=self.config.name,
            cache=self.cache,
            kill_grace=self.config.kill_grace,
            keep_workspaces=self.config.keep_workspaces,
            watcher=self.reaper,
            on_change=self._signal_change,
            ports=PortLeases(*self.config.port_range),
            orphans=self.orphans,
            project_limits=self.config.project_limits,
            job_user=self.config.job_user,
            gpus=self._gpus,
        )
        self._runner.launchers = self._start_launchers(self._runner.base_env)
        self._runner.functions = FunctionPool.for_worker(
            self._runner.base_env, self.config.job_user, self.reaper, self.orphans
        )
        sweeper = asyncio.create_task(self._sweep_orphans())
        link = self._dial()
        backoff = Backoff(0.1, MAX_BACKOFF, jitter=random.random)
        try:
            while not self._done():
                connected = await self._session(link)
                if self._done():
                    break
                if connected:
                    backoff.reset()
                delay = backoff.next_delay() or 0.0  # no attempts or patience: never None
                leader, self._leader = self._leader, ""
                if leader:
                    log.info("master at %s is a standby: dialling the leader at %s", self.master, leader)
                elif not connected:
                    log.warning("master at %s unreachable; retrying in %.1fs", self.master, delay)
                if self._masters.move_on(leader, tls=self.config.tls is not None):
                    await self._channel_closed()
                    link = self._dial()
                self._changed.clear()
                await wait_event(self._changed, delay)
        finally:
            await self._stop_attempts("worker stopping")
            sweeper.cancel()
            self._runner.launchers.close()
            if self._runner.functions is not None:
                self._runner.functions.close()
            self.orphans.sweep()  # nothing runs now: whatever jobs left behind goes
            self.reaper.close()
            self._memory.close()
            if self._jobs is not None and not self.config.keep_workspaces:
                self._jobs.close()
            await self._channel_closed()
            log.info("worker %s stopped", self.config.name)

    @property
    def master(self) -> str:
        """The master this worker dials now: one of `--master A,B,...`, the next after a failure."""
        return self._masters.current

    def _dial(self) -> rpc.WorkerLinkStub:
        self._channel = channel(self.master, self.config.tls, CHANNEL_OPTIONS, aio=True)
        self._stub = rpc.TitanStub(self._channel)
        return rpc.WorkerLinkStub(self._channel)

    async def _channel_closed(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    def _running_attempts(self) -> set[str]:
        return {ex.attempt_id for ex in self.executions.values() if ex.exit is None}

    async def _sweep_orphans(self) -> None:
        """Reap and end what jobs left behind, while there can be any (see orphans.py)."""
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            if self.orphans.busy:
                self.orphans.sweep()

    def _start_launchers(self, env: dict[str, str]) -> Launchers:
        if self.config.python_launcher != "fork" or not launcher.supported():
            return Launchers(None)
        return Launchers.start(
            env, self.config.job_user, self.config.preload, on_start=lambda one: self.orphans.own(one.pid)
        )

    async def _stop_attempts(self, reason: str) -> None:
        """Stop every running attempt (SIGTERM, SIGKILL after the grace period) and wait for them.

        They end as "cancelled", which the master takes as handed back: it runs them elsewhere
        without counting a failure.
        """
        self._observe()
        self._carry_out(self.link.handle(StopAll(reason, self.config.kill_grace)))
        tasks = [ex.task for ex in self.executions.values() if ex.task is not None and not ex.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.config.kill_grace + 5)

    # ------------------------------------------------------------------ one connection

    async def _session(self, link: rpc.WorkerLinkStub) -> bool:
        """Run one stream until it ends or the worker is done. Returns whether the master answered."""
        call = link.Connect(metadata=self._metadata)
        try:
            await call.write(pb.WorkerMessage(hello=self._hello()))
            first = await call.read()
        except grpc.aio.AioRpcError as exc:
            self._check_fatal(exc)
            self._leader = leader_named(exc.trailing_metadata()) or ""
            return False
        if first is grpc.aio.EOF or not first.HasField("welcome"):
            if await call.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise FatalWorkerError(await call.details())
            self._leader = leader_named(await call.trailing_metadata()) or ""
            return False
        conn = _Connection(
            call, heartbeat_interval=first.welcome.heartbeat_interval or 1.0, told_draining=self.draining
        )
        self._apply_welcome(first.welcome)
        self._conn = conn
        log.info("connected to master %s as %s (%s)", self.master, self.config.name, self.config.worker_id)
        sender = asyncio.create_task(self._send_loop(conn))
        reader = asyncio.create_task(self._read_loop(conn))
        watcher = asyncio.create_task(self._until_done())
        try:
            done, _ = await asyncio.wait({sender, reader, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if watcher in done and not sender.done() and not reader.done():
                await self._goodbye(conn, sender, reader)
        except grpc.aio.AioRpcError:
            pass
        finally:
            for task in (sender, reader, watcher):
                task.cancel()
            self._conn = None
            call.cancel()
        if not self._done():
            log.warning("lost the connection to the master at %s", self.master)
        return True

    async def _goodbye(
        self, conn: _Connection, sender: asyncio.Task[None], reader: asyncio.Task[None]
    ) -> None:
        """Still connected and done: hand back what runs, wait for the acks, then say we are leaving."""
        await self._stop_attempts(HAND_BACK if self._stop_now else "handed back at the drain deadline")
        deadline = time.monotonic() + GOODBYE_TIMEOUT
        while self.executions and time.monotonic() < deadline and not sender.done():
            self._changed.clear()
            await wait_event(self._changed, deadline - time.monotonic())
        # Let the sender finish the write it may be in: cancelling a task inside a write cancels the RPC.
        conn.closing = True
        conn.wake.set()
        await asyncio.wait({sender}, timeout=GOODBYE_TIMEOUT)
        sender.cancel()
        try:
            await sender
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        await conn.call.write(pb.WorkerMessage(leaving=True))
        await conn.call.done_writing()
        # The master ends the stream once it has read the goodbye; cancelling before that could drop it.
        await asyncio.wait({reader}, timeout=GOODBYE_TIMEOUT)

    def _check_fatal(self, exc: grpc.aio.AioRpcError) -> None:
        if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            raise FatalWorkerError(exc.details() or "the master refused this worker's token")

    def _observe(self) -> None:
        """Tell the link's state what is true of each attempt now (started, healthy, output, end)."""
        for ex in list(self.executions.values()):
            facts = AttemptFacts(
                ex.attempt_id,
                pid=ex.pid,
                started_at=ex.started_at,
                ports=ex.ports,
                healthy=ex.healthy,
                output_size=ex.spool.size,
                exit=ex.exit,
            )
            self._carry_out(self.link.handle(Observed(facts)))

    def _carry_out(self, instructions: list[Instruction]) -> None:
        """What the link's state decided about attempts' processes and files (reports are
        `_pending`'s to send; a `StartProcess` is `_assign`'s, which has the assignment)."""
        for instruction in instructions:
            ex = self.executions.get(instruction.attempt_id)
            if ex is None:
                continue
            if isinstance(instruction, Stop):
                ex.stop("cancelled", instruction.reason, instruction.grace)
            elif isinstance(instruction, Kill):
                log.info("attempt %s was superseded while we were away; stopping it", ex.attempt_id)
                if ex.process is not None:
                    ex.process.kill_now()
                else:
                    ex.stop("cancelled", "superseded", 0.0)
            elif isinstance(instruction, Forget):
                del self.executions[instruction.attempt_id]
                ex.spool.remove()
                self._changed.set()

    def _hello(self) -> pb.WorkerHello:
        self._observe()
        held = [
            pb.HeldAttempt(
                attempt_id=facts.attempt_id,
                pid=facts.pid,
                started_at=facts.started_at,
                finished=facts.exit is not None,
                exit=facts.exit,
                log_size=facts.output_size,
                host=self.host if facts.ports else "",
                ports=facts.ports,
                healthy=facts.healthy,
            )
            for facts in self.link.held()
        ]
        return pb.WorkerHello(
            worker_id=self.config.worker_id,
            name=self.config.name,
            host=capabilities.hostname(),
            pid=os.getpid(),
            tags=sorted(self.tags),
            slots=self.config.slots,
            cpu_count=capabilities.cpu_count() if self.config.cpus is None else self.config.cpus,
            memory_bytes=capabilities.memory_bytes()
            if self.config.memory_mb is None
            else self.config.memory_mb << 20,
            gpus=self._gpus,
            memory_enforcement=self._memory.mode,
            version=__version__,
            held=held,
            draining=self.draining,
            pool=self.config.pool,
            provider=self.config.provider,
            launch_id=self.config.launch_id,
        )

    def _apply_welcome(self, welcome: pb.Welcome) -> None:
        self._observe()
        event = Welcomed(tuple(welcome.superseded), dict(welcome.log_offsets))
        self._carry_out(self.link.handle(event))
        self._signal_change()

    async def _read_loop(self, conn: _Connection) -> None:
        while True:
            message = await conn.call.read()
            if message is grpc.aio.EOF:
                return
            for assignment in message.assign:
                self._assign(assignment)
            for cancel in message.cancel:
                event = Cancelled(cancel.attempt_id, cancel.reason or "cancelled", cancel.grace)
                self._carry_out(self.link.handle(event))
            if message.acks:
                self._observe()
                self._carry_out(self.link.handle(Acked(tuple(message.acks))))
            if message.HasField("drain"):
                self.drain(message.drain.deadline, message.drain.reason or "asked by the master")

    def _pending(self, conn: _Connection, heartbeat: bool) -> pb.WorkerMessage | None:
        """Everything the master has not been told yet, as one message (None when there is nothing)."""
        message = pb.WorkerMessage()
        self._observe()
        for instruction in self.link.report(MAX_MESSAGE_LOG_BYTES):
            if isinstance(instruction, ReportStarted):
                facts = instruction.facts
                message.started.append(
                    pb.AttemptStarted(
                        attempt_id=facts.attempt_id,
                        pid=facts.pid,
                        started_at=facts.started_at,
                        host=self.host if facts.ports else "",
                        ports=facts.ports,
                    )
                )
            elif isinstance(instruction, ReportHealthy):
                message.healthy.append(instruction.attempt_id)
            elif isinstance(instruction, SendOutput):
                message.logs.extend(self._output(instruction))
            elif isinstance(instruction, ReportFinished):
                message.finished.append(
                    pb.AttemptFinished(attempt_id=instruction.attempt_id, exit=instruction.exit)
                )
            else:
                self._carry_out([instruction])
        if self.draining and not conn.told_draining:
            conn.told_draining = message.draining = True
        if heartbeat:
            cpu, mem = self._sampler.sample()
            running = self.link.running()
            message.heartbeat.CopyFrom(pb.Heartbeat(cpu_percent=cpu, memory_percent=mem, running=running))
        if not (
            message.started
            or message.logs
            or message.finished
            or message.healthy
            or message.draining
            or heartbeat
        ):
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
            message = self._pending(conn, beat)
            if message is not None:
                await conn.call.write(message)
                if sum(len(d.data) for d in message.logs) >= MAX_MESSAGE_LOG_BYTES:
                    continue  # more output is waiting
            if conn.closing:
                return
            await wait_event(conn.wake, max(0.0, next_beat - time.monotonic()))

    def _wake(self) -> None:
        if self._conn is not None:
            self._conn.wake.set()

    def _output(self, send: SendOutput) -> list[pb.LogData]:
        """The bytes the link's state said to send, in chunks. A spool that gives fewer than it has
        written is broken: the connection ends, and the next welcome says what the master has."""
        spool, out = self.executions[send.attempt_id].spool, []
        offset, end = send.offset, send.offset + send.length
        while offset < end:
            data = spool.read(offset, min(LOG_CHUNK, end - offset))
            if not data:
                raise OSError(f"the output spool of attempt {send.attempt_id} ends at {offset}, before {end}")
            out.append(pb.LogData(attempt_id=send.attempt_id, offset=offset, data=data))
            offset += len(data)
        return out

    # ------------------------------------------------------------------ attempts

    def _assign(self, assignment: pb.Assignment) -> None:
        for instruction in self.link.handle(Assigned(assignment.attempt_id)):
            if isinstance(instruction, StartProcess):
                self._start(assignment)
            else:
                self._carry_out([instruction])

    def _start(self, assignment: pb.Assignment) -> None:
        assert self._runner is not None
        spool = Spool(
            self._spool_dir / f"{assignment.attempt_id}.log",
            self._disk,
            secrets=assignment.secret_env.values(),  # masked as *** in its output
        )
        if self._jobs is not None:  # the job user's directory, outside this worker's private one
            private = self._jobs.attempt(assignment.attempt_id)
            ex = Execution(assignment, spool, private.workspace, private.result, private=private)
        else:
            ex = Execution(
                assignment=assignment,
                spool=spool,
                workspace=self._ws_dir / assignment.attempt_id,
                result_path=self._spool_dir / f"{assignment.attempt_id}.result.json",
            )
        self.executions[ex.attempt_id] = ex
        ex.task = asyncio.create_task(self._runner.run(ex))

    async def _fetch_artifact(self, artifact_hash: str) -> AsyncIterator[bytes]:
        assert self._stub is not None
        async for chunk in self._stub.GetArtifact(
            pb.ArtifactRef(hash=artifact_hash), metadata=self._metadata
        ):
            yield chunk.data


async def run_worker(config: WorkerConfig) -> int:
    agent = WorkerAgent(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.handle_signal, sig)
    try:
        await agent.run()
    except FatalWorkerError as exc:
        log.error("the master at %s refused this worker: %s", config.master, exc)
        return 2
    except JobUserError as exc:
        log.error("%s", exc)
        return 2
    return 0
