"""The master process: a gRPC (asyncio) server around the master loop, as an async context manager."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import random
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from titan_runtime.config import ConfigError, join_host_port, writable_dir
from titan_runtime.core.cluster import ClusterConfig, ClusterState
from titan_runtime.core.effects import (
    AckFinished,
    Assign,
    AttemptExit,
    CancelAttempt,
    Changes,
    DisconnectWorker,
    DrainWorker,
    Effect,
    Note,
)
from titan_runtime.core.limits import DEFAULT_LIMITS, Limits
from titan_runtime.core.retention import DEFAULT_RETENTION, Retention
from titan_runtime.diskspace import DEFAULT_MIN_FREE, DiskGuard
from titan_runtime.master.api import TitanServicer
from titan_runtime.master.artifacts import ArtifactStore
from titan_runtime.master.audit import AuditLog
from titan_runtime.master.auth import (
    CREDENTIAL_GRACE,
    TOKEN_FILE,
    AuthInterceptor,
    Credentials,
    load_or_create_token,
)
from titan_runtime.master.collector import Collector
from titan_runtime.master.convert import spec_to_pb
from titan_runtime.master.guard import GuardInterceptor
from titan_runtime.master.history import History
from titan_runtime.master.jointokens import JoinTokens
from titan_runtime.master.leadership import LEASE_TTL, Leadership
from titan_runtime.master.link import WorkerLinkServicer
from titan_runtime.master.lock import DataDirLock
from titan_runtime.master.logs import LogStore
from titan_runtime.master.loop import MasterLoop
from titan_runtime.master.schedules import Schedules
from titan_runtime.master.secrets import MissingSecret, SecretError, Secrets
from titan_runtime.master.standby import StandbyServer
from titan_runtime.master.throttle import MAX_DELAY, AuthFailures
from titan_runtime.master.tokens import NamedTokens
from titan_runtime.master.watch import WatchHub
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.proto import titan_pb2_grpc as rpc
from titan_runtime.providers import registry
from titan_runtime.store import Store, describe_store, open_store
from titan_runtime.tls import ClientTls, ServerTls, TlsError, is_loopback, local_client_tls
from titan_runtime.version import __version__

if TYPE_CHECKING:
    from titan_runtime.clusterconfig import ClusterFile
    from titan_runtime.master.autoscaler import AutoscalerLoop
    from titan_runtime.master.metrics import MasterMetrics

log = logging.getLogger("titan.master")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
READY_FILE = "master.json"


def port_is_free(host: str, port: int) -> bool:
    """Check before gRPC tries (it would log its own multi-line error first)."""
    if port == 0:
        return True
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host or "0.0.0.0", port))
        except OSError:
            return False
    return True


def new_attempt_id() -> str:
    return "at-" + os.urandom(6).hex()


@dataclass
class MasterConfig:
    data_dir: Path
    bind: str = "127.0.0.1"
    port: int = 9090
    store: str = "sqlite"
    heartbeat_interval: float = 1.0
    lease_timeout: float = 10.0
    kill_grace: float = 10.0  # SIGTERM to SIGKILL when cancelling
    fsync: bool = True  # False: commits survive a master crash but not a machine crash
    cluster: ClusterFile | None = None  # pools to autoscale (`--cluster cluster.yaml`)
    limits: Limits = DEFAULT_LIMITS
    min_free: str = DEFAULT_MIN_FREE  # the data dir's free-space watermark (diskspace.py)
    credential_grace: float = CREDENTIAL_GRACE  # how long a job credential outlives its run
    auth_delay_max: float = MAX_DELAY  # the longest wait before answering a failed authentication
    tls: ServerTls | None = None  # None: plaintext, allowed only on loopback unless `insecure`
    insecure: bool = False  # plaintext on a non-loopback address, said to be wanted
    retention: Retention = DEFAULT_RETENTION  # what history is kept, and for how long
    metrics_port: int | None = None  # Prometheus metrics on this port (0: any free one); None: none
    metrics_bind: str = "127.0.0.1"
    lease_ttl: float = LEASE_TTL  # a shared store's leader's lease: seconds it lasts unrenewed
    #: HOST:PORT other hosts reach this master at ("": the bound address, or the host's name).
    advertise: str = ""
    #: Where jobs' logs and artifacts are kept (None: the data dir); standby masters share one.
    output_dir: Path | None = None


class MasterServer:
    """Start with `async with MasterServer(config) as master:`; `master.address` is where it listens."""

    def __init__(self, config: MasterConfig) -> None:
        self.config = config
        self.address = ""
        self.token_path = config.data_dir / TOKEN_FILE
        self._server: grpc.aio.Server | None = None
        self._loop: MasterLoop | None = None
        self._link: WorkerLinkServicer | None = None
        self._logs: LogStore | None = None
        self.autoscaler: AutoscalerLoop | None = None
        self._collector: Collector | None = None
        self._watch = WatchHub()  # the watch streams' subscribers, told of every commit
        self.stopped = asyncio.Event()
        self._lock: DataDirLock | None = None
        self._leadership: Leadership | None = None  # with a shared store: its lease
        #: How workers started on this host (`up`, local pools) dial it: None when it is plaintext.
        self.local_tls: ClientTls | None = None
        self._tls_credentials: grpc.ServerCredentials | None = None
        self._metrics: MasterMetrics | None = None

    @property
    def metrics_address(self) -> str:
        """HOST:PORT of the metrics endpoint ("" without one)."""
        return self._metrics.address if self._metrics is not None else ""

    @property
    def failure(self) -> str:
        """Why the master stopped by itself (its store failed), or "" while it runs or stopped on request."""
        if self._leadership is not None and self._leadership.lost:
            return self._leadership.lost
        if self._loop is None or self._loop.failed is None:
            return ""
        return self._loop.stopping_message().replace("is stopping", "stopped")

    async def __aenter__(self) -> MasterServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        cfg = self.config
        if cfg.tls is None and not cfg.insecure and not is_loopback(cfg.bind):
            raise ConfigError(
                f"refusing to listen on {cfg.bind or 'every address'} without TLS: the token and everything "
                "else would cross the network in clear. Give --tls-dir (make one with `titan-runtime certs "
                "init --host NAME`), or --insecure on a network you trust"
            )
        try:  # the files are read before anything is opened: a wrong path is said at once
            self._tls_credentials = cfg.tls.credentials() if cfg.tls is not None else None
            self.local_tls = local_client_tls(cfg.tls) if cfg.tls is not None else None
        except TlsError as exc:
            raise ConfigError(f"{exc}; make the files with `titan-runtime certs init`") from None
        data_dir = writable_dir(cfg.data_dir.expanduser().resolve())
        self._lock = DataDirLock(data_dir)  # before anything is read or written there
        try:
            await self._start(data_dir)
        except BaseException:
            self._lock.release()
            raise

    async def _start(self, data_dir: Path) -> None:
        cfg = self.config
        self.token_path = data_dir / TOKEN_FILE
        disk = DiskGuard(data_dir, cfg.min_free)
        store = open_store(cfg.store, data_dir, fsync=cfg.fsync)
        port_wanted = cfg.port
        if store.supports_lease:  # several masters may share it: lead only once holding its lease
            try:
                port_wanted = await self._wait_as_standby(store)
            except BaseException:
                store.close()
                raise
        cluster_token = load_or_create_token(data_dir)
        try:
            self._secrets = Secrets(store, data_dir)
        except SecretError as exc:
            store.close()
            raise ConfigError(str(exc)) from None
        state = ClusterState(
            ClusterConfig(
                heartbeat_interval=cfg.heartbeat_interval,
                lease_timeout=cfg.lease_timeout,
                limits=cfg.limits,
                strict_transitions=os.environ.get("TITAN_STRICT_TRANSITIONS") == "1",
            ),
            new_id=new_attempt_id,
            jitter=random.random,
        )
        loop = MasterLoop(state, store)
        # Restoring builds a few objects per stored job and frees none of them: the collector's
        # passes over a growing heap would be a third of it. What was restored is frozen out of
        # later collections: it lives as long as the master (docs/performance.md).
        gc.disable()
        try:
            snapshot = await loop.in_store(store.load)
            state.restore(
                snapshot.runs,
                snapshot.jobs,
                snapshot.attempts,
                snapshot.workers,
                loop.clock(),
                snapshot.last_seq,
            )
            restored = f"restored {len(snapshot.runs)} running runs ({len(snapshot.jobs)} jobs); finished runs stay in the store"
            del snapshot
        finally:
            gc.enable()
        gc.freeze()
        self._loop = loop

        history = History(state, store)

        def run_ended(run_id: str) -> float | None:
            run = history.header(run_id)
            return None if run is None else run.ended_at

        credentials = Credentials(
            cluster_token,
            self.token_path,
            JoinTokens(store),
            run_ended,
            cfg.credential_grace,
            loop.clock,
            NamedTokens(store),
        )
        output = (
            writable_dir(cfg.output_dir.expanduser().resolve(), "output dir") if cfg.output_dir else data_dir
        )
        self._logs = LogStore(
            output / "logs", disk if output == data_dir else DiskGuard(output, cfg.min_free)
        )
        artifacts = ArtifactStore(output / "artifacts")
        self._link = WorkerLinkServicer(loop, self._logs, cfg.heartbeat_interval, credentials)
        self._credentials = credentials
        if cfg.metrics_port is not None:  # imported only then: prometheus_client takes 50 ms to load
            from titan_runtime.master.metrics import MasterMetrics

            self._metrics = MasterMetrics(state, loop, self._logs, __version__)
            try:
                self._metrics.serve(cfg.metrics_bind, cfg.metrics_port)
            except ConfigError:
                await loop.stop()
                store.close()
                raise

        server = grpc.aio.server(
            interceptors=[
                *([self._metrics.interceptor()] if self._metrics is not None else []),
                GuardInterceptor(AuditLog(store, credentials, loop.clock)),
                AuthInterceptor(credentials, AuthFailures(cfg.auth_delay_max)),
            ],
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
            ],
        )
        servicer = TitanServicer(loop, self._logs, artifacts, credentials, disk, history)
        servicer.watch_hub = self._watch
        servicer.secrets = self._secrets
        self._schedules = servicer.schedules = Schedules(loop, servicer.submit)
        self._collector = servicer.collector = Collector(loop, history, self._logs, artifacts, cfg.retention)
        servicer.on_revoke = self._link.drop_credential
        rpc.add_TitanServicer_to_server(servicer, server)
        rpc.add_WorkerLinkServicer_to_server(self._link, server)
        target = join_host_port(cfg.bind, port_wanted)
        try:
            if not port_is_free(cfg.bind, port_wanted):
                port = 0
            elif self._tls_credentials is not None:
                port = server.add_secure_port(target, self._tls_credentials)
            else:
                port = server.add_insecure_port(target)
        except RuntimeError:
            port = 0
        if not port:
            await loop.stop()
            store.close()
            if self._metrics is not None:
                self._metrics.stop()
            raise _cannot_listen(target)
        await server.start()
        self._server = server
        log.info(restored)
        loop.start(self._carry_out, history.remember)
        self._schedules.start()
        self._collector.start()  # type: ignore[union-attr]
        assert loop._task is not None
        loop._task.add_done_callback(lambda _t: self.stopped.set())
        host = "127.0.0.1" if cfg.bind in ("0.0.0.0", "") else ("::1" if cfg.bind == "::" else cfg.bind)
        self.address = join_host_port(host, port)
        if self._leadership is not None:
            await self._leadership.advertise(self._advertised(port))
            self._leadership.keep(self._lease_lost)
        ready = {
            "address": self.address,
            "bind": join_host_port(cfg.bind, port),
            "pid": os.getpid(),
            "version": __version__,
            "tls": cfg.tls is not None,
        }
        if self._metrics is not None:
            ready["metrics"] = self._metrics.address
        if cfg.cluster is not None:
            self.autoscaler = servicer.autoscaler = self._start_autoscaler(
                cfg.cluster, loop, data_dir, cluster_token, credentials
            )
        (data_dir / READY_FILE).write_text(json.dumps(ready) + "\n")
        self._ready_file = data_dir / READY_FILE
        self._lock.describe(self.address)
        log.info(
            "titan master %s listening on %s (store %s in %s); token in %s",
            __version__,
            join_host_port(cfg.bind, port),
            describe_store(cfg.store),
            data_dir,
            self.token_path,
        )

    async def _wait_as_standby(self, store: Store) -> int:
        """Answer on the master's port as a standby (naming the leader) until this master holds
        the store's lease; the port to serve on then (the one the standby had: `--port 0` too)."""
        cfg = self.config
        self._leadership = leadership = Leadership(store, cfg.lease_ttl)
        standby = StandbyServer(lambda: leadership.leader_address)
        target = join_host_port(cfg.bind, cfg.port)
        port = standby.bind(target, self._tls_credentials) if port_is_free(cfg.bind, cfg.port) else 0
        if not port:
            raise _cannot_listen(target)
        await standby.start()
        try:
            await leadership.acquire(self._advertised(port))
        finally:
            await standby.stop()
        return port

    def _advertised(self, port: int) -> str:
        """Where clients and workers on other hosts reach this master: --advertise, else the bound
        address, else (bound to every address) this host's name."""
        cfg = self.config
        if cfg.advertise:
            return cfg.advertise
        return join_host_port(socket.getfqdn() if cfg.bind in ("0.0.0.0", "::", "") else cfg.bind, port)

    def _lease_lost(self, why: str) -> None:
        """Another master leads now (or may soon): stop serving, at once."""
        self.stopped.set()

    async def stop(self, grace: float = 1.0) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        assert self._link and self._loop and self._logs
        # The loop stops first: streams closing because the master stops are not worker deaths,
        # and nothing about them is committed. Workers reconnect to the next master and are adopted.
        await self._schedules.stop()
        if self._collector is not None:
            await self._collector.stop()
        if self.autoscaler is not None:
            await self.autoscaler.stop()  # local pool workers leave while the master still listens
        await self._loop.stop()
        if self._leadership is not None:  # after the last commit: a standby takes over at once
            await self._leadership.release()
        self._link.close_all()
        await server.stop(grace)
        self._loop.store.close()
        self._logs.close_all()
        if self._metrics is not None:  # its server's shutdown waits for its poll: not on the loop
            await asyncio.to_thread(self._metrics.stop)
        try:
            self._ready_file.unlink()
        except OSError:
            pass
        if self._lock is not None:
            self._lock.release()
        self.stopped.set()
        log.info("titan master stopped")

    def _start_autoscaler(
        self,
        cluster: ClusterFile,
        loop: MasterLoop,
        data_dir: Path,
        cluster_token: str,
        credentials: Credentials,
    ) -> AutoscalerLoop:
        from titan_runtime.master.autoscaler import AutoscalerLoop

        providers = {
            pool.name: registry.provider_class(pool.spec.provider).from_pool(
                pool.name, pool.settings, data_dir
            )
            for pool in cluster.pools
        }
        scaler = AutoscalerLoop(
            loop, cluster, providers, self.address, cluster_token, credentials.join_tokens, self.local_tls
        )
        scaler.start()
        return scaler

    def _open_secrets(self, effect: Assign) -> dict[str, str] | None:
        """The values of the secrets the job names, for its assignment alone; None when one cannot
        be opened (deleted since the job was submitted, or the key is gone): the attempt then ends as
        an error of its own, never running without what it asked for."""
        if not effect.spec.secrets:
            return {}
        try:
            return self._secrets.resolve(effect.spec.secrets)
        except SecretError as exc:
            if isinstance(exc, MissingSecret):
                why = (
                    f"secret {exc.name} was deleted after submission; set it again with "
                    f"`titan-runtime secret set {exc.name}`"
                )
            else:
                why = str(exc)
            assert self._loop is not None
            state = self._loop.state
            exit = AttemptExit("error", reason=why)
            self._loop.post(
                lambda now: state.attempt_finished(effect.worker_id, effect.attempt_id, exit, now)
            )
            return None

    async def _carry_out(self, effects: list[Effect], changes: Changes) -> None:
        """Send what the committed batch decided, one message per worker, and wake whoever waits."""
        assert self._link and self._loop and self._logs
        sessions = self._link.sessions
        outgoing: dict[str, pb.MasterMessage] = {}
        acks: dict[str, list[str]] = {}

        def message_for(worker_id: str) -> pb.MasterMessage | None:
            if worker_id not in sessions:
                return None
            return outgoing.setdefault(worker_id, pb.MasterMessage())

        for effect in effects:
            if isinstance(effect, Assign):
                message = message_for(effect.worker_id)
                secret_env = self._open_secrets(effect) if message is not None else {}
                if message is not None and secret_env is not None:
                    message.assign.append(
                        pb.Assignment(
                            attempt_id=effect.attempt_id,
                            run_id=effect.run_id,
                            job_id=effect.job_id,
                            attempt=effect.number,
                            spec=spec_to_pb(effect.spec),
                            credential=self._credentials.job_credential(effect.run_id),
                            env=effect.env,
                            secret_env=secret_env,
                            gpus=effect.gpus,
                            inputs=effect.inputs,
                        )
                    )
            elif isinstance(effect, CancelAttempt):
                message = message_for(effect.worker_id)
                if message is not None:
                    message.cancel.append(
                        pb.CancelAttempt(
                            attempt_id=effect.attempt_id, reason=effect.reason, grace=self.config.kill_grace
                        )
                    )
            elif isinstance(effect, AckFinished):
                acks.setdefault(effect.worker_id, []).append(effect.attempt_id)
            elif isinstance(effect, DrainWorker):
                message = message_for(effect.worker_id)
                if message is not None:
                    message.drain.CopyFrom(pb.Drain(deadline=effect.deadline, reason=effect.reason))
            elif isinstance(effect, DisconnectWorker):
                session = sessions.get(effect.worker_id)
                if session is not None:
                    session.close()
            elif isinstance(effect, Note):
                log.info("%s", effect.message)
        for worker_id, attempt_ids in acks.items():
            if worker_id in sessions:
                sessions[worker_id].ack(attempt_ids)
        for worker_id, message in outgoing.items():
            sessions[worker_id].send(message)
        for attempt_id in changes.ended_attempts:
            self._logs.close(attempt_id)
        if self._metrics is not None:
            self._metrics.committed(changes)
        self._watch.publish(changes)
        notifier = self._loop.notifier
        notifier.notify(changes.job_keys)
        notifier.notify(changes.run_ids | {run_id for run_id, _ in changes.job_keys})

        notifier.notify(("attempt", a) for a in changes.ended_attempts)


def _cannot_listen(target: str) -> ConfigError:
    return ConfigError(
        f"cannot listen on {target}: the port is already in use or the address is not local; "
        "stop the other process or choose another --port"
    )
