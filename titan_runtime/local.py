"""A whole cluster on this machine: the master in this process, workers as child processes.

Used by `titan-runtime up`, `titan-runtime demo` and the benchmarks. Every worker is started
with a parent-death signal and stopped by its pid, so nothing outlives the cluster.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from titan_runtime import config, eventloop
from titan_runtime.clusterconfig import ClusterFile
from titan_runtime.config import ConfigError
from titan_runtime.core.model import WorkerState
from titan_runtime.master.server import MasterConfig, MasterServer

log = logging.getLogger("titan.local")


class ClusterStartError(RuntimeError):
    pass


class LocalCluster:
    def __init__(
        self,
        data_dir: Path,
        *,
        bind: str = "127.0.0.1",
        port: int = 9090,
        workers: int = 2,
        worker_tags: Sequence[str] = (),
        slots: int | None = None,
        store: str = "sqlite",
        worker_log_dir: Path | None = None,
        master_config: dict[str, Any] | None = None,
        cluster: ClusterFile | None = None,
        on_master_exit: Callable[[], None] | None = None,
        log_format: str = "text",
    ) -> None:
        """`on_master_exit` is called (from the master's thread) if the master stops by itself:
        its store failed. `failure` then says why. `log_format` is the workers' --log-format (the
        master logs through this process's logging)."""
        self.data_dir = data_dir
        self.config = MasterConfig(
            data_dir=data_dir, bind=bind, port=port, store=store, cluster=cluster, **(master_config or {})
        )
        self.n_workers = workers
        self.worker_tags = list(worker_tags)
        self.slots = slots
        self.worker_log_dir = worker_log_dir or data_dir / "workers"
        self.server: MasterServer | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._on_master_exit = on_master_exit
        self.log_format = log_format

    @property
    def failure(self) -> str:
        """Why the master stopped by itself, or ""."""
        return self.server.failure if self.server is not None else ""

    @property
    def address(self) -> str:
        assert self.server is not None
        return self.server.address

    @property
    def metrics_address(self) -> str:
        """Where the master serves its metrics ("" without --metrics-port)."""
        assert self.server is not None
        return self.server.metrics_address

    @property
    def token_path(self) -> Path:
        assert self.server is not None
        return self.server.token_path

    @property
    def token(self) -> str:
        return self.token_path.read_text().strip()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ master thread

    def _in_master(self, coro: object, timeout: float = 30.0) -> object:
        assert self._loop is not None
        future: Future[object] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def _start_master(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = eventloop.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self.server = MasterServer(self.config)
            try:
                loop.run_until_complete(self.server.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            watcher = loop.create_task(self._watch_master(self.server))
            loop.run_forever()
            watcher.cancel()
            loop.close()

        self._thread = threading.Thread(target=serve, name="titan-master", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]

    async def _watch_master(self, server: MasterServer) -> None:
        await server.stopped.wait()
        if server.failure and self._on_master_exit is not None:
            self._on_master_exit()

    async def _alive_workers(self) -> int:
        assert self.server is not None and self.server._loop is not None
        return sum(1 for w in self.server._loop.state.workers.values() if w.state is WorkerState.ALIVE)

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0) -> None:
        self._start_master()
        try:
            self.worker_log_dir.mkdir(parents=True, exist_ok=True)
            for i in range(1, self.n_workers + 1):
                self.workers.append(self._spawn_worker(f"worker-{i}"))
            self.wait_for_workers(self.n_workers, timeout)
        except BaseException:
            self.stop()
            raise

    def _spawn_worker(self, name: str) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "titan_runtime",
            "worker",
            "--master",
            self.address,
            "--name",
            name,
            "--work-dir",
            str(self.data_dir / "workers" / name),
            "--exit-with-parent",
            str(os.getpid()),
        ]
        if self.worker_tags:
            argv += ["--tags", ",".join(self.worker_tags)]
        if self.slots:
            argv += ["--slots", str(self.slots)]
        if self.log_format != "text":
            argv += ["--log-format", self.log_format]
        if self.server is not None and self.server.local_tls is not None:
            argv += self.server.local_tls.args()
        logfile = open(self.worker_log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            return config.start_worker(argv, self.token, stdout=logfile, stderr=logfile)
        finally:
            logfile.close()

    def wait_for_workers(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._in_master(self._alive_workers()) >= count:
                return
            for proc in self.workers:
                if proc.poll() is not None:
                    raise ClusterStartError(
                        f"a worker exited with code {proc.returncode} while starting; see its log in {self.worker_log_dir}"
                    )
            if time.monotonic() > deadline:
                raise ClusterStartError(
                    f"workers did not register within {timeout:g}s; see their logs in {self.worker_log_dir}"
                )
            time.sleep(0.01)

    def stop(self, grace: float = 15.0) -> None:
        """Stop every worker by pid now (SIGINT: jobs handed back), SIGKILL what is left after `grace`,
        then stop the master."""
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + grace
        for proc in self.workers:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers.clear()
        if self._loop is not None and self.server is not None:
            try:
                self._in_master(self.server.stop())
            except (ConfigError, RuntimeError, TimeoutError) as exc:
                log.warning("stopping the master: %s", exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None
        self._thread = None
