"""Real Airflow for the tests: a temporary AIRFLOW_HOME, DAG runs in subprocesses, their task logs.

Every Airflow process a test starts is a child of the test, started here and stopped by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import ProcessCluster, pid_alive, wait_until

HERE = Path(__file__).resolve().parent
TEST_DAGS = HERE / "dags"
BRIDGE_DAGS = HERE / "bridge_dags"
RUN_DAG = HERE / "run_dag.py"
PYTHON = sys.executable
AIRFLOW = str(Path(PYTHON).with_name("airflow"))


@dataclass
class AirflowHome:
    """A migrated Airflow metadata DB in a temp dir, shared by the session's tests."""

    root: Path

    def env(
        self, cluster: ProcessCluster | None = None, dags_folder: Path = TEST_DAGS, **extra: str
    ) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            AIRFLOW_HOME=str(self.root),
            AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
            # SQLite lets one process write at a time; wait for the lock (the api-server and the
            # scheduler write concurrently) instead of failing after the default 5 seconds.
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{self.root / 'airflow.db'}?timeout=60",
            PYTHONUNBUFFERED="1",
        )
        for key in ("TITAN_ADDRESS", "TITAN_TOKEN", "TITAN_HOST", "TITAN_PORT", "TITAN_DATA_DIR"):
            env.pop(key, None)
        if cluster is not None:
            env["AIRFLOW_CONN_TITAN_DEFAULT"] = titan_connection(cluster)
        env.update(extra)
        return env


def titan_connection(cluster: ProcessCluster) -> str:
    """The `titan` connection for a test cluster, in Airflow's AIRFLOW_CONN_* JSON form."""
    return json.dumps(
        {"conn_type": "titan", "host": "127.0.0.1", "port": cluster.port, "password": cluster.token}
    )


def migrate(home: AirflowHome) -> None:
    home.root.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [AIRFLOW, "db", "migrate"], env=home.env(), capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"airflow db migrate failed:\n{done.stdout}\n{done.stderr}")
    # WAL lets readers go on while one process writes: the api-server, the scheduler and the task
    # processes of the bridge tests share this file. The mode is stored in the database itself.
    with sqlite3.connect(home.root / "airflow.db") as db:
        db.execute("PRAGMA journal_mode=WAL")


@dataclass
class DagResult:
    state: str
    run_id: str
    tasks: dict[str, dict[str, Any]]
    xcom: dict[str, dict[str, Any]]
    log: str

    def task_state(self, task_id: str) -> str:
        return self.tasks[task_id]["state"]


@dataclass
class RunningDag:
    """One `dag.test()` in a subprocess; its stdout and stderr (the task log) go to a file."""

    dag_id: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    out_path: Path
    exit_code: int | None = field(default=None)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 120.0) -> None:
        def seen() -> bool:
            if text in self.log():
                return True
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"dag.test of {self.dag_id} ended before logging {text!r}:\n{self.log()}"
                )
            return False

        wait_until(seen, timeout, interval=0.05, what=f"{text!r} in the task log of {self.dag_id}")

    def wait(self, timeout: float = 180.0) -> DagResult:
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"dag.test of {self.dag_id} did not finish in {timeout}s:\n{self.log()}")
        if self.exit_code != 0 or not self.out_path.exists():
            raise AssertionError(f"dag.test of {self.dag_id} exited with {self.exit_code}:\n{self.log()}")
        data = json.loads(self.out_path.read_text())
        return DagResult(data["state"], data["run_id"], data["tasks"], data["xcom"], self.log())

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


def start_dag(
    home: AirflowHome,
    workdir: Path,
    dag_id: str,
    cluster: ProcessCluster,
    conf: dict[str, Any] | None = None,
    dags_folder: Path = TEST_DAGS,
    address: str = "",
) -> RunningDag:
    """`address`: the connection's Host instead of the cluster's own (several masters' HOST:PORT)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = home.env(cluster, dags_folder)
    if address:
        env["AIRFLOW_CONN_TITAN_DEFAULT"] = json.dumps(
            {"conn_type": "titan", "host": address, "password": cluster.token}
        )
    log_path = workdir / f"{dag_id}.log"
    out_path = workdir / f"{dag_id}.json"
    out_path.unlink(missing_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [PYTHON, str(RUN_DAG), dag_id, "--out", str(out_path), "--conf", json.dumps(conf or {})],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=workdir,
        )
    return RunningDag(dag_id, proc, log_path, out_path)


def task_log_lines(log: str, logger_suffix: str = "TitanOperator") -> list[str]:
    """The messages our operator logged (structlog console lines: `<ts> [info ] MESSAGE [logger] ...`)."""
    messages = []
    for line in log.splitlines():
        if f"{logger_suffix}]" not in line:
            continue
        _, _, rest = line.partition("] ")
        message, _, _ = rest.rpartition(" [airflow.task.operators.")
        messages.append(message.rstrip())
    return messages


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AirflowServices:
    """`airflow api-server` and `airflow scheduler` on 127.0.0.1, each in its own process group.

    Stopped by pid: SIGTERM to the group whose id is the service's pid (the scheduler's
    LocalExecutor workers live in it), SIGKILL if it has not ended after a grace period.
    """

    USER, PASSWORD = "titan", "titan-test-password"
    #: What the health endpoint calls each component that reports its health there.
    HEALTH = {"scheduler": "scheduler", "triggerer": "triggerer", "dag-processor": "dag_processor"}

    def __init__(
        self,
        home: AirflowHome,
        cluster: ProcessCluster,
        dags_folder: Path,
        components: tuple[str, ...] = ("scheduler",),
    ) -> None:
        """`components`: what runs beside the api-server (scheduler, dag-processor, triggerer)."""
        self.home = home
        self.dags_folder = dags_folder
        self.components = components
        self._token: str | None = None
        self.port = free_port()
        passwords = home.root / "passwords.json"
        passwords.write_text(json.dumps({self.USER: self.PASSWORD}))
        self.env = home.env(
            cluster,
            dags_folder,
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{self.USER}:admin",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
            AIRFLOW__API_AUTH__JWT_SECRET="titan-airflow-tests-jwt-secret",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.url}/execution/",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__CORE__TEST_CONNECTION="Enabled",
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopped_pids: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """What a Titan job or the CLI needs to reach this Airflow through the bridge."""
        return {
            "TITAN_AIRFLOW_URL": self.url,
            "TITAN_AIRFLOW_USERNAME": self.USER,
            "TITAN_AIRFLOW_PASSWORD": self.PASSWORD,
        }

    def log(self, name: str) -> str:
        try:
            return (self.home.root / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def airflow(self, *args: str) -> None:
        done = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        self.airflow("dags", "reserialize")
        commands = {
            "api-server": [
                AIRFLOW,
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            **{name: [AIRFLOW, name] for name in self.components},
        }
        for name, argv in commands.items():
            with open(self.home.root / f"{name}.log", "wb") as log:
                self.procs[name] = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                    start_new_session=True,
                )
        wait_until(self._healthy, 120, interval=0.25, what="the Airflow api-server and scheduler")

    def _healthy(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"airflow {name} exited with {proc.returncode}:\n{self.log(name)}")
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=2) as response:
                health = json.loads(response.read())
        except OSError:
            return False
        return all(health.get(self.HEALTH[name], {}).get("status") == "healthy" for name in self.components)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One call to the REST API (/api/v2 + `path`) as the admin user; the JSON it answered."""
        if self._token is None:
            login = json.dumps({"username": self.USER, "password": self.PASSWORD}).encode()
            request = urllib.request.Request(
                f"{self.url}/auth/token", login, {"Content-Type": "application/json"}, method="POST"
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                self._token = json.loads(response.read())["access_token"]
        request = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            None if body is None else json.dumps(body).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {self._token}"},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}"
            ) from None

    def stop(self) -> None:
        self.stopped_pids.update({name: proc.pid for name, proc in self.procs.items()})
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            try:  # anything left in its group (executor workers, serve-logs)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.procs.clear()


@contextlib.contextmanager
def titan_cluster(root: Path, slots: int) -> Iterator[ProcessCluster]:
    """A master and one worker `w1` in `root`, stopped by pid afterwards."""
    cluster = ProcessCluster(root)
    cluster.root.mkdir(parents=True)
    try:
        cluster.start_master()
        cluster.add_worker("w1", slots=slots)
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def airflow_running(
    root: Path, cluster: ProcessCluster, dags_folder: Path, components: tuple[str, ...] = ("scheduler",)
) -> Iterator[AirflowServices]:
    """A fresh Airflow (its own metadata DB in `root`) with the api-server and `components`
    talking to `cluster`, stopped by pid afterwards (and checked gone)."""
    home = AirflowHome(root)
    migrate(home)
    services = AirflowServices(home, cluster, dags_folder, components)
    try:
        services.start()
        yield services
    finally:
        services.stop()
    for name, pid in services.stopped_pids.items():
        if pid_alive(pid):
            raise AssertionError(f"airflow {name} (pid {pid}) is still running")
