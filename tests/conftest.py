"""Fixtures shared by every test: real clusters, and a guard that fails any test leaving a process behind."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.helpers import ProcessCluster
from tests.hosts import NetworkNamespace, PostgresServer

MARK = "TITAN_TEST_MARK"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-examples",
        type=int,
        default=0,
        help="Examples per property in tests/fuzz (default: each test's own, about 3 minutes in all); "
        "raise it for a longer hunt, e.g. --fuzz-examples 5000.",
    )


def _marked_processes(mark: str) -> list[psutil.Process]:
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(MARK) == mark:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture(autouse=True)
def no_leaked_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every process started during the test inherits a mark; any still alive afterwards fails the test."""
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK, mark)
    # Masters the tests start hold every job's state change to the transition table: one outside
    # it fails its event (a master users run says so in its log and goes on).
    monkeypatch.setenv("TITAN_STRICT_TRANSITIONS", "1")
    yield
    leaked = _marked_processes(mark)
    if leaked:
        described = []
        for proc in leaked:
            try:
                described.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        pytest.fail("processes left behind:\n  " + "\n  ".join(described))


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[object]:
    clusters: list[ProcessCluster] = []

    def make(store: str = "sqlite", master_args: tuple[str, ...] = (), name: str = "c") -> ProcessCluster:
        cluster = ProcessCluster(tmp_path / f"{name}{len(clusters)}", store=store, master_args=master_args)
        cluster.root.mkdir(parents=True)
        clusters.append(cluster)
        cluster.start_master()
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()
    for cluster in clusters:
        assert "IllegalTransition" not in cluster.master_log(), cluster.master_log()[-3000:]


@pytest.fixture
def cluster(make_cluster) -> ProcessCluster:  # type: ignore[no-untyped-def]
    """A master and one untagged worker with 2 slots."""
    c = make_cluster()
    c.add_worker("w1", slots=2)
    return c


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; each test takes a database of its own. Its files
    are in a directory of their own (pytest's are closed to the server's user), removed after."""
    why = PostgresServer.available()
    if why:
        pytest.skip(f"needs PostgreSQL: {why}")
    root = Path(tempfile.mkdtemp(prefix="titan-postgres-"))
    try:
        server = PostgresServer(root, env={k: v for k, v in os.environ.items() if k != MARK})
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def netns() -> Iterator[NetworkNamespace]:
    """A network namespace joined to this one by a veth pair: another host, as far as the network
    goes (root, iproute2)."""
    why = NetworkNamespace.available()
    if why:
        pytest.skip(f"needs a network namespace: {why}")
    ns = NetworkNamespace()
    try:
        yield ns
    finally:
        ns.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def standby_masters(
    tmp_path: Path, postgres: PostgresServer
) -> Iterator[tuple[ProcessCluster, ProcessCluster]]:
    """Two masters for one database (lease 1 s) and one output dir, neither started (see
    tests.helpers.start_leader_and_standby): a's data dir holds the cluster's token and b's a copy
    (masters share it), their ports are chosen, both are stopped at the end."""
    url = postgres.new_database()
    shared = ("--lease-ttl", "1", "--output-dir", str(tmp_path / "output"))  # logs on a shared mount
    a = ProcessCluster(tmp_path / "a", store=url, master_args=shared)
    b = ProcessCluster(tmp_path / "b", store=url, master_args=shared)
    a.port, b.port = _free_port(), _free_port()
    for c in (a, b):
        c.data_dir.mkdir(parents=True)
    (a.data_dir / "token").write_text(secrets.token_urlsafe(32) + "\n")
    (a.data_dir / "token").chmod(0o600)
    shutil.copy2(a.data_dir / "token", b.data_dir / "token")
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
