"""A master on PostgreSQL (`--store postgresql://...`): runs work, and a kill -9 and restart loses
nothing, as on SQLite. The database is a fresh one on the session's PostgreSQL server."""

from __future__ import annotations

import concurrent.futures
import secrets
import shutil
import signal
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster, wait_until
from tests.hosts import PostgresServer
from tests.integration.test_services import API
from titan_runtime import TitanClient, TitanJob


def test_a_master_on_postgres_runs_a_dag_and_a_kill_9_loses_nothing(
    make_cluster,
    postgres: PostgresServer,  # type: ignore[no-untyped-def]
) -> None:
    url = postgres.new_database()
    cluster: ProcessCluster = make_cluster(store=url)
    assert "(store postgresql://titan@127.0.0.1" in cluster.master_log()
    cluster.add_worker("w1", slots=2)
    client = cluster.client
    first = TitanJob("first", command=["true"])
    gate = TitanJob("gate", command=["sh", "-c", 'while [ ! -e "$GO" ]; do sleep 0.05; done'])
    last = TitanJob("last", command=["sh", "-c", "echo done"])
    go = cluster.root / "go"
    gate.env = {"GO": str(go)}
    first >> gate >> last
    run = client.submit_dag("on-postgres", [first, gate, last])
    wait_until(lambda: client.get_job(f"{run}/gate").state == "RUNNING", 30, what="the gate to run")
    client.store_put("kept", "yes")
    cluster.kill_master(signal.SIGKILL)
    cluster.start_master()
    go.touch()
    record = client.wait_run(run, 60)
    assert record.state == "SUCCEEDED"
    assert [j.state for j in client.get_run(run).jobs] == ["SUCCEEDED"] * 3
    assert len(client.get_job(f"{run}/gate").attempts) == 1  # adopted, not run again
    assert client.store_get("kept") == "yes"
    assert [r.id for r in client.list_runs()] == [run]  # a finished run, read from the database


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pair(tmp_path: Path, postgres: PostgresServer) -> Iterator[tuple[ProcessCluster, ProcessCluster]]:
    """Two masters for one database (lease 1 s), neither started: a's data dir holds the cluster's
    token and b's a copy (masters share it), b's port is chosen, both are stopped at the end."""
    url = postgres.new_database()
    a = ProcessCluster(tmp_path / "a", store=url, master_args=("--lease-ttl", "1"))
    b = ProcessCluster(tmp_path / "b", store=url, master_args=("--lease-ttl", "1"))
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


def _leader_and_standby(a: ProcessCluster, b: ProcessCluster) -> tuple[str, str]:
    """Start a, then b as its standby; both addresses, for workers and clients."""
    a.start_master()
    b.start_master(wait=False)
    wait_until(lambda: "standby: the master" in b.master_log(), 30, what="b to wait as a standby")
    assert not (b.data_dir / "master.json").exists()  # a standby does not serve
    return f"127.0.0.1:{a.port},127.0.0.1:{b.port}"


def test_a_standby_takes_over_when_the_leader_is_killed(
    pair: tuple[ProcessCluster, ProcessCluster], tmp_path: Path
) -> None:
    """Kill -9 the leader mid-DAG: the standby leads once the lease runs out, adopts the running
    job from the worker (which dials the next master of its list) and finishes the run: nothing
    lost, nothing run twice; a wait in flight rides it out."""
    a, b = pair
    both = _leader_and_standby(a, b)
    a.add_worker("w1", args=("--master", both))
    client = TitanClient(address=both, token=a.token)  # follows whichever leads
    go = tmp_path / "go"
    first = TitanJob("first", command=["true"])
    gate = TitanJob("gate", command=["sh", "-c", 'while [ ! -e "$GO" ]; do sleep 0.05; done'])
    gate.env = {"GO": str(go)}
    last = TitanJob("last", command=["true"])
    first >> gate >> last
    run = client.submit_dag("failover", [first, gate, last])
    wait_until(lambda: client.get_job(f"{run}/gate").state == "RUNNING", 30, what="the gate to run")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.wait_run, run, 90)  # in flight through the failover
        a.kill_master(signal.SIGKILL)
        b.wait_for_master(30)  # leads once a's lease has run out
        assert "leading: holds the store's lease (epoch 2)" in b.master_log()
        go.touch()
        assert waiting.result(120).state == "SUCCEEDED"
    assert len(client.get_job(f"{run}/gate").attempts) == 1  # adopted, not run again
    assert [w.name for w in client.list_workers() if w.state == "ALIVE"] == ["w1"]
    client.close()


def test_a_service_runs_on_through_a_failover(pair: tuple[ProcessCluster, ProcessCluster]) -> None:
    a, b = pair
    both = _leader_and_standby(a, b)
    a.add_worker("w1", args=("--master", both))
    client = TitanClient(address=both, token=a.token)
    client.submit_job(TitanJob("api", API, job_type="SERVICE"))
    before = wait_until(
        lambda: next((s for s in client.list_services("api") if s.state == "HEALTHY"), None), 30
    )
    a.kill_master(signal.SIGKILL)
    b.wait_for_master(30)
    wait_until(lambda: client.list_services("api")[0].state == "HEALTHY", 30, what="the service adopted")
    after = client.list_services("api")[0]
    job = client.get_job(f"{before.run_id}/api")
    assert after.endpoint == before.endpoint and len(job.attempts) == 1  # the same process, not restarted
    with urllib.request.urlopen(f"http://{after.endpoint}/hello", timeout=10) as answer:
        assert answer.status == 200
    client.close()


def test_masters_started_at_the_same_moment_elect_one(pair: tuple[ProcessCluster, ProcessCluster]) -> None:
    a, b = pair
    a.start_master(wait=False)
    b.start_master(wait=False)
    leading = wait_until(
        lambda: [c for c in (a, b) if (c.data_dir / "master.json").exists()] or None, 30, what="a leader"
    )
    assert len(leading) == 1
    standby = b if leading[0] is a else a
    wait_until(lambda: "standby: the master" in standby.master_log(), 30, what="the other to wait")
    assert not (standby.data_dir / "master.json").exists()


def test_a_leader_cut_off_from_the_database_stops_and_a_standby_leads(
    pair: tuple[ProcessCluster, ProcessCluster],
) -> None:
    import psycopg

    a, b = pair
    _leader_and_standby(a, b)
    assert a.master is not None
    leader = a.master
    with psycopg.connect(a.store, autocommit=True) as db:  # the leader's connections dropped
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (f"titan-master-{leader.pid}",),
        )
    assert leader.wait(30) != 0  # it stopped by itself, saying so
    assert "stepped down" in a.master_log() or "could not be written" in a.master_log()
    a.master = None
    b.wait_for_master(30)
    assert "leading: holds the store's lease (epoch 2)" in b.master_log()
