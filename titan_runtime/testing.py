"""Real clusters for tests and benchmarks: a master process and worker processes on 127.0.0.1.

Each cluster lives in its own directory, listens on an ephemeral port, and is stopped
by pid when the caller is done. Nothing here mocks Titan.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from titan_runtime import config
from titan_runtime.client.sync import TitanClient
from titan_runtime.tls import ClientTls

T = TypeVar("T")
PYTHON = sys.executable


def wait_until(
    predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.02, what: str = "condition"
) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 20.0) -> None:
    """Stop a process this module started, by its pid: `sig`, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ProcessCluster:
    def __init__(self, root: Path, store: str = "sqlite", master_args: Sequence[str] = ()) -> None:
        self.root = root
        self.data_dir = root / "master"
        self.store = store
        self.master_args = list(master_args)
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.port = 0
        self.address = ""
        self._client: TitanClient | None = None
        #: How its clients and workers dial a master started with TLS options (set it before them).
        self.tls: ClientTls | None = None

    # ------------------------------------------------------------------ master

    def start_master(self, timeout: float = 20.0, wait: bool = True) -> None:
        """Start the master and wait until it listens (`wait=False`: a standby master on a shared
        store listens only once it leads; `wait_for_master` then)."""
        ready = self.data_dir / "master.json"
        ready.unlink(missing_ok=True)
        log = open(self.root / "master.log", "ab")  # noqa: SIM115
        argv = [
            PYTHON,
            "-m",
            "titan_runtime",
            "master",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        argv += ["--store", self.store, *self.master_args]
        self.master = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        if wait:
            self.wait_for_master(timeout)

    def wait_for_master(self, timeout: float = 20.0) -> None:
        proc = self.master
        assert proc is not None
        ready = self.data_dir / "master.json"

        def started() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise AssertionError(f"master exited with {proc.returncode}:\n{self.master_log()}")
            try:
                info = json.loads(ready.read_text())
            except (OSError, ValueError):
                return None
            return info if info.get("pid") == proc.pid else None

        info = wait_until(started, timeout, what="the master to listen")
        self.address = info["address"]
        self.port = int(self.address.rsplit(":", 1)[1])

    def master_log(self) -> str:
        try:
            return (self.root / "master.log").read_text()
        except OSError:
            return ""

    def kill_master(self, sig: int = signal.SIGKILL) -> None:
        assert self.master is not None
        self.master.send_signal(sig)
        self.master.wait(30)
        self.master = None

    def restart_master(self) -> None:
        if self.master is not None:
            self.kill_master(signal.SIGTERM)
        self.start_master()

    @property
    def token(self) -> str:
        return (self.data_dir / "token").read_text().strip()

    # ------------------------------------------------------------------ workers

    def add_worker(
        self,
        name: str,
        tags: Sequence[str] = (),
        slots: int = 2,
        args: Sequence[str] = (),
        wait: bool = True,
        prefix: Sequence[str] = (),
        token: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a worker process (`prefix` runs it elsewhere, e.g. inside a network namespace;
        `token` another credential than the cluster token)."""
        log = open(self.root / f"worker-{name}.log", "ab")  # noqa: SIM115
        argv = [*prefix, PYTHON, "-m", "titan_runtime", "worker", "--master", self.address, "--name", name]

        argv += ["--slots", str(slots), "--work-dir", str(self.root / "workers" / name), *args]
        if tags:
            argv += ["--tags", ",".join(tags)]
        if self.tls is not None:
            argv += self.tls.args()
        try:
            proc = config.start_worker(argv, token or self.token, stdout=log, stderr=log)  # as `up` gives it
        finally:
            log.close()
        self.workers[name] = proc
        if wait:
            self.wait_for_worker(name)
        return proc

    def worker_log(self, name: str) -> str:
        try:
            return (self.root / f"worker-{name}.log").read_text()
        except OSError:
            return ""

    def wait_for_worker(self, name: str, timeout: float = 20.0) -> None:
        proc = self.workers[name]

        def registered() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker {name} exited with {proc.returncode}:\n{self.worker_log(name)}")
            return any(
                w.name == name and w.state == "ALIVE" and w.pid == proc.pid
                for w in self.client.list_workers()
            )

        wait_until(registered, timeout, what=f"worker {name} to register")

    def stop_worker(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        proc = self.workers.pop(name)
        proc.send_signal(sig)
        return proc.wait(timeout)

    # ------------------------------------------------------------------ clients

    @property
    def client(self) -> TitanClient:
        if self._client is None:
            tls = self.tls
            self._client = TitanClient(
                address=self.address,
                token=self.token,
                tls_ca=tls and tls.ca,
                tls_cert=tls and tls.cert,
                tls_key=tls and tls.key,
            )
        return self._client

    def env(self) -> dict[str, str]:
        env = dict(os.environ, TITAN_ADDRESS=self.address, TITAN_DATA_DIR=str(self.data_dir))
        if self.tls is not None:
            env.update(TITAN_TLS_CA=self.tls.ca, TITAN_TLS_CERT=self.tls.cert, TITAN_TLS_KEY=self.tls.key)
        return env

    def cli(
        self,
        *args: str,
        timeout: float = 60.0,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `titan-runtime ARGS` against this cluster (`input` on its standard input) and
        capture its output."""
        return subprocess.run(
            [PYTHON, "-m", "titan_runtime", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or self.env(),
            cwd=cwd or self.root,
            check=False,
        )

    # ------------------------------------------------------------------ teardown

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        for name in list(self.workers):
            stop_process(self.workers.pop(name), signal.SIGINT)  # stop now; SIGTERM would drain
        if self.master is not None:
            stop_process(self.master)
        self.master = None


# ------------------------------------------------------------------ the dashboard, in a browser

#: Debian's chromium, which the browser tests and the dashboard benchmark drive through Playwright
#: (Playwright's own browser download is not reachable here).
CHROMIUM = Path("/usr/bin/chromium")
#: Needed on a machine without a display or GPU, in a container (no sandbox), on a closed network:
#: without the background-networking flags chromium's own connections out are refused and noisy.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_LISTENING = re.compile(r"Titan dashboard on (https?://\S+?)/? \(master ")


class DashboardProcess:
    """`titan-runtime dashboard --port 0` for a cluster, as a process (its own token the
    cluster's); `url` (no trailing slash) is read from the line it prints once it listens, and it
    is waited for until /healthz answers. Stopped by its pid."""

    def __init__(self, cluster: ProcessCluster) -> None:
        self.log_path = cluster.root / "dashboard.log"
        env = dict(cluster.env(), TITAN_TOKEN=cluster.token)
        argv = [PYTHON, "-m", "titan_runtime", "dashboard", "--port", "0", "--bind", "127.0.0.1"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*argv, "--address", cluster.address],
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        try:
            self.url: str = wait_until(self._listening, 30, what="the dashboard to listen")
            wait_until(self._healthy, 30, what="the dashboard to answer")
        except BaseException:
            self.stop()
            raise

    def _listening(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the dashboard exited with {self.proc.returncode}:\n{self.log()}")
        found = _LISTENING.search(self.log())
        return found.group(1) if found else None

    def _healthy(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.url + "/healthz", timeout=5) as response:
                return bool(response.status == 200)
        except OSError:  # URLError is one
            return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """By its pid: SIGTERM (it shuts down gracefully), SIGKILL if it does not within 20 s."""
        stop_process(self.proc)
