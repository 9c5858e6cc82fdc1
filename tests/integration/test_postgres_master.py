"""A master on PostgreSQL (`--store postgresql://...`): runs work, and a kill -9 and restart loses
nothing, as on SQLite. The database is a fresh one on the session's PostgreSQL server."""

from __future__ import annotations

import signal

from tests.helpers import ProcessCluster, wait_until
from tests.hosts import PostgresServer
from titan_runtime import TitanJob


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
