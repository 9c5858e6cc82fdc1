"""The worker link: one bidirectional stream per worker, carried out over the master loop.

The stream's first message must be the worker's hello. From then on the worker sends
heartbeats, start and finish reports and log bytes; the master sends assignments, cancels and
acknowledgements through the session's outbox. When the stream ends, the worker is declared dead
at once (a process that died closes its stream): its attempts are retried elsewhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from titan_runtime.config import peer_host
from titan_runtime.core.effects import AttemptExit, WorkerHello
from titan_runtime.master.auth import Credentials, bearer
from titan_runtime.master.convert import exit_from_pb, hello_from_pb
from titan_runtime.master.logs import LogStore
from titan_runtime.master.loop import MasterLoop
from titan_runtime.master.policy import Kind
from titan_runtime.master.tokens import NamedToken, named_after
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.proto import titan_pb2_grpc as rpc
from titan_runtime.tls import LOCAL_WORKER

log = logging.getLogger("titan.master")

HELLO_TIMEOUT = 10.0
#: How long an acknowledgement may wait for another message to the same worker to travel with.
ACK_DELAY = 0.02
_CLOSE = object()


def worker_token_refusal(record: NamedToken, hello: WorkerHello) -> str:
    """Why a worker token does not admit this hello, or "": its workers are named after it and
    claim no tag it was not granted (a job's tags are what keep its secrets on the workers meant for it)."""
    if not named_after(record.name, hello.worker_id):  # its workers are named after it
        return (
            f"worker token {record.name} admits only workers named {record.name}; start the worker "
            f"with --name {record.name}"
        )
    beyond = sorted(hello.tags - set(record.tags))
    if beyond:
        granted = ", ".join(record.tags) or "none"
        return (
            f"worker token {record.name} does not grant the tags {', '.join(beyond)} (it grants: {granted}); "
            "make a token with `token create --role worker --tags ...`"
        )
    return ""


def certificate_of(context: grpc.aio.ServicerContext) -> tuple[str, str]:
    """(kind, name) of the client certificate the peer presented (`certs issue KIND NAME`), or
    ("", "") when it presented none."""
    auth = context.auth_context() or {}
    names, subjects = auth.get("x509_common_name") or [b""], auth.get("x509_subject") or [b""]
    unit = re.search(rb"(?:^|,)OU=([^,]*)", subjects[0])
    return (unit[1] if unit else b"").decode(errors="replace"), names[0].decode(errors="replace")


def certificate_refusal(kind: str, name: str, worker_id: str) -> str:
    """Why a worker with this client certificate may not register as `worker_id`, or "".

    A worker certificate binds the worker's name, as a worker token does; the master's own pools
    share the certificate `local` (their workers are named by the master), and a client certificate
    connects clients, not workers."""
    if not kind or (kind == "worker" and name == LOCAL_WORKER):
        return ""
    if kind != "worker":
        return (
            f"a {kind} certificate ({name}) cannot connect a worker; give the worker one made with "
            "`titan-runtime certs issue worker NAME`"
        )
    if not named_after(name, worker_id):
        return f"the worker certificate {name} admits only workers named {name}; start the worker with --name {name}"
    return ""


class WorkerSession:
    """`service_host`: the host this worker's services are reached at whatever it reports ("": as
    it reports; a worker admitted by a join token gets the address the master sees it from, so
    that it cannot point a service's endpoint at another machine)."""

    def __init__(self, worker_id: str, peer: str, service_host: str = "", token_name: str = "") -> None:
        self.worker_id = worker_id
        self.peer = peer
        self.service_host = service_host
        self.token_name = token_name  # the worker token that admitted it: revoking it closes the session
        self.outbox: asyncio.Queue[object] = asyncio.Queue()
        self.closed = False
        self.leaving = False  # the worker said goodbye: the stream's end is not a crash
        #: The log files of the attempts its hello held and the master adopted (see _held_logs).
        self.adopted_logs: dict[str, Path] = {}
        self._acks: list[str] = []
        self._ack_timer: asyncio.TimerHandle | None = None

    def send(self, message: pb.MasterMessage) -> None:
        if self.closed:
            return
        if self._acks:
            message.acks.extend(self._acks)
            self._acks.clear()
        self.outbox.put_nowait(message)

    def ack(self, attempt_ids: list[str]) -> None:
        """Acknowledge finished attempts with the next message to this worker, or after ACK_DELAY.

        Nothing waits on an acknowledgement but the worker's clean-up, so it need not cost a
        message and a wake-up of its own: when jobs run back to back it rides on the next assignment.
        """
        self._acks.extend(attempt_ids)
        if self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(ACK_DELAY, self._flush_acks)

    def _flush_acks(self) -> None:
        self._ack_timer = None
        if self._acks:
            self.send(pb.MasterMessage())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._ack_timer is not None:
                self._ack_timer.cancel()
            self.outbox.put_nowait(_CLOSE)


class WorkerLinkServicer(rpc.WorkerLinkServicer):
    def __init__(
        self,
        loop: MasterLoop,
        logs: LogStore,
        heartbeat_interval: float,
        credentials: Credentials | None = None,
    ) -> None:
        self._loop = loop
        self._logs = logs
        self._heartbeat_interval = heartbeat_interval
        self._credentials = credentials
        self.sessions: dict[str, WorkerSession] = {}

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            session.close()

    def drop_credential(self, token_name: str) -> None:
        """A worker token was revoked: the workers it admitted are disconnected (and refused when
        they come back)."""
        for session in list(self.sessions.values()):
            if session.token_name == token_name:
                log.warning("worker %s disconnected: its token %s was revoked", session.worker_id, token_name)
                session.close()

    def _admit(
        self, token: str, hello: WorkerHello, peer: str, certificate: tuple[str, str] = ("", "")
    ) -> tuple[WorkerHello | None, str, str, str]:
        """What a worker's credentials let this hello register as: (hello as granted, or None;
        why refused; the host its services are reached at; the worker token's name)."""
        caller = self._credentials.identify(token) if self._credentials is not None else None
        if caller is None or caller.kind is not Kind.JOIN:  # a launch's certificate is named after it
            refused = certificate_refusal(*certificate, hello.worker_id)
            if refused:
                return None, refused, "", ""
        if caller is None or caller.kind not in (Kind.JOIN, Kind.WORKER):
            return hello, "", "", ""  # the cluster token or an admin token: as reported
        worker_id, now = hello.worker_id, self._loop.clock()
        if caller.kind is Kind.JOIN:
            # A one-time join token: consumed by this worker's first registration, its own after that.
            known = worker_id in self._loop.state.workers
            joined, refused = self._credentials.join_tokens.bind(token, worker_id, hello.tags, known, now)  # type: ignore[union-attr]
            if joined is None:
                return None, refused, "", ""
            pool, provider, launch_id = joined.pool, joined.provider, joined.launch_id
        else:
            record = self._credentials.named.lookup(token)  # type: ignore[union-attr]
            assert record is not None
            refused = worker_token_refusal(record, hello)
            if refused:
                return None, refused, "", ""
            pool, provider, launch_id = record.pool or hello.pool, hello.provider, hello.launch_id
        # Its services are reached where the master sees it from: it cannot point an endpoint elsewhere.
        host = peer_host(peer)
        granted = dataclasses.replace(
            hello,
            pool=pool,
            provider=provider,
            launch_id=launch_id,
            held=tuple(dataclasses.replace(h, host=h.host and host) for h in hello.held),
        )
        return granted, "", host, caller.name

    async def Connect(
        self, request_iterator: AsyncIterator[pb.WorkerMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.MasterMessage]:
        try:
            first = await asyncio.wait_for(request_iterator.__anext__(), HELLO_TIMEOUT)
        except (StopAsyncIteration, asyncio.TimeoutError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a worker stream must start with a hello")
            return
        if not first.HasField("hello") or not first.hello.worker_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a worker stream must start with a hello")
            return
        hello = hello_from_pb(first.hello)
        worker_id = hello.worker_id
        admitted, refused, service_host, token_name = self._admit(
            bearer(context.invocation_metadata()), hello, context.peer(), certificate_of(context)
        )
        if admitted is None:
            log.warning("refused worker %s (%s): %s", hello.name, worker_id, refused)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refused)
            return
        hello = admitted
        previous = self.sessions.get(worker_id)
        if previous is not None:
            previous.close()
        session = WorkerSession(worker_id, context.peer(), service_host, token_name)
        self.sessions[worker_id] = session
        state = self._loop.state
        held_logs = self._held_logs(worker_id, hello)
        welcome = await self._loop.call(lambda now: state.worker_connected(hello, now))
        session.adopted_logs = {a: held_logs[a] for a in welcome.log_offsets if a in held_logs}
        offsets = {a: self._logs.size(a, path) for a, path in session.adopted_logs.items()}
        log.info(
            "worker %s (%s) connected from %s, tags %s",
            hello.name,
            worker_id,
            session.peer,
            sorted(hello.tags),
        )
        yield pb.MasterMessage(
            welcome=pb.Welcome(
                worker_id=worker_id,
                heartbeat_interval=self._heartbeat_interval,
                superseded=welcome.superseded,
                log_offsets=offsets,
            )
        )
        reader = asyncio.get_running_loop().create_task(self._read(session, request_iterator))
        try:
            while True:
                message = await session.outbox.get()
                if message is _CLOSE:
                    break
                yield message
        finally:
            reader.cancel()
            session.closed = True
            if self.sessions.get(worker_id) is session:
                del self.sessions[worker_id]
                if session.leaving:
                    self._loop.post(lambda now: state.worker_left(worker_id, now))
                else:
                    self._loop.post(lambda now: state.worker_disconnected(worker_id, now, "disconnected"))

    async def _read(self, session: WorkerSession, request_iterator: AsyncIterator[pb.WorkerMessage]) -> None:
        state = self._loop.state
        worker_id = session.worker_id
        try:
            async for message in request_iterator:
                if session.closed:
                    break
                if message.HasField("heartbeat"):
                    hb = message.heartbeat  # through the loop, in order with this worker's other reports
                    self._loop.post(
                        lambda now, c=hb.cpu_percent, m=hb.memory_percent: state.heartbeat(
                            worker_id, now, c, m
                        )
                    )
                if message.draining:  # first: what it hands back in this message must go elsewhere
                    self._loop.post(lambda now: state.set_draining(worker_id, now))
                for started in message.started:
                    host = started.host and (session.service_host or started.host)
                    self._loop.post(
                        lambda now, s=started, h=host: state.attempt_started(
                            worker_id, s.attempt_id, s.pid, s.started_at, now, h, dict(s.ports)
                        )
                    )
                for data in message.logs:
                    self._append_log(session, data)
                for finished in message.finished:
                    exit: AttemptExit = exit_from_pb(finished.exit)
                    self._loop.post(
                        lambda now, a=finished.attempt_id, e=exit: state.attempt_finished(
                            worker_id, a, e, now
                        )
                    )
                for attempt_id in message.healthy:
                    self._loop.post(lambda now, a=attempt_id: state.attempt_healthy(worker_id, a, now))
                if message.leaving:
                    session.leaving = True
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("worker %s stream failed", worker_id)
        finally:
            session.close()

    def _held_logs(self, worker_id: str, hello: WorkerHello) -> dict[str, Path]:
        """The log files of the attempts a hello holds, found before the hello is committed: an
        attempt it says ended is finished by that commit, and its run may leave memory before the
        worker has resent the output the master lacks."""
        found = {}
        for held in hello.held:
            known = self._loop.state.attempt(held.attempt_id)
            if known is not None and known[1].worker_id == worker_id:
                job, attempt = known
                found[attempt.id] = self._logs.path(job.run_id, job.id, attempt.number)
        return found

    def _append_log(self, session: WorkerSession, data: pb.LogData) -> None:
        found = self._loop.state.attempt(data.attempt_id)
        if found is not None:
            job, attempt = found
            if attempt.worker_id != session.worker_id:
                return
            path, ended = self._logs.path(job.run_id, job.id, attempt.number), attempt.state.terminal
        else:  # ended, and out of memory: output the worker resends since its hello
            path, ended = session.adopted_logs.get(data.attempt_id), True
            if path is None:
                return
        self._logs.append(data.attempt_id, path, data.offset, data.data)
        if ended:
            self._logs.close(data.attempt_id)  # bytes resent after the attempt was committed
