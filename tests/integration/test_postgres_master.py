"""A master on PostgreSQL (`--store postgresql://...`): runs work, and a kill -9 and restart loses
nothing, as on SQLite. The database is a fresh one on the session's PostgreSQL server."""

from __future__ import annotations

import concurrent.futures
import signal
import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest

from tests.helpers import ProcessCluster, start_leader_and_standby, wait_until
from tests.hosts import PostgresServer
from tests.integration.test_services import API
from titan_runtime import TitanClient, TitanJob
from titan_runtime.client.drivers import method_callable
from titan_runtime.masters import leader_named
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.testing import PYTHON


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


def test_a_standby_names_the_leader_and_clients_and_workers_given_only_it_follow(
    standby_masters: tuple[ProcessCluster, ProcessCluster],
) -> None:
    """A standby answers every call UNAVAILABLE with the leader's address: a worker, an SDK
    client and the CLI given only the standby's address go to the leader, and a submission made
    through it happens once."""
    a, b = standby_masters
    start_leader_and_standby(a, b)
    standby = f"127.0.0.1:{b.port}"
    with grpc.insecure_channel(standby) as channel, pytest.raises(grpc.RpcError) as answer:
        method_callable(channel, "SubmitRun")(pb.SubmitRunRequest(name="x" * 100_000), timeout=10)
    assert answer.value.code() == grpc.StatusCode.UNAVAILABLE
    assert leader_named(answer.value.trailing_metadata()) == f"127.0.0.1:{a.port}"
    assert "this Titan master is a standby" in (answer.value.details() or "")
    a.add_worker("w1", args=("--master", standby))  # registered with the leader
    client = TitanClient(address=standby, token=a.token)
    job = client.submit_job(TitanJob("hello", command=["echo", "hi"]))
    assert client.wait(job, 60).state == "SUCCEEDED"
    assert len(a.client.list_runs()) == 1  # asked again at the leader, done once
    client.close()
    done = a.cli("submit", "--wait", "--", "true", env=dict(a.env(), TITAN_ADDRESS=standby))
    assert done.returncode == 0, done.stderr
    assert len(a.client.list_runs()) == 2


def test_the_cli_follows_a_job_and_waits_for_a_run_through_a_failover(
    standby_masters: tuple[ProcessCluster, ProcessCluster], tmp_path: Path
) -> None:
    """`submit --follow` and `run --wait`, in flight when the leader is killed, go on against the
    new leader and exit with the job's and the run's outcome."""
    a, b = standby_masters
    both = start_leader_and_standby(a, b)
    a.add_worker("w1", args=("--master", both))
    go = tmp_path / "go"
    script = f'echo before; while [ ! -e "{go}" ]; do sleep 0.05; done; echo after'
    dag = tmp_path / "dag.yaml"
    dag.write_text(
        f"name: through\njobs:\n  - id: gate\n    command: [sh, -c, 'while [ ! -e \"{go}\" ]; do sleep 0.05; done']\n"
        "  - id: last\n    command: ['true']\n    depends_on: [gate]\n"
    )
    env = dict(a.env(), TITAN_ADDRESS=both)
    outputs = {name: open(tmp_path / f"{name}.out", "w+") for name in ("follow", "run")}  # noqa: SIM115
    commands = {
        "follow": ["submit", "--follow", "--id", "followed", "--", "sh", "-c", script],
        "run": ["run", str(dag), "--wait"],
    }
    procs = {
        name: subprocess.Popen(
            [PYTHON, "-m", "titan_runtime", *argv], env=env, stdout=outputs[name], stderr=subprocess.STDOUT
        )
        for name, argv in commands.items()
    }
    try:
        wait_until(lambda: "before" in (tmp_path / "follow.out").read_text(), 30, what="the job's first line")

        def both_run() -> bool:
            runs = a.client.list_runs()
            return len(runs) == 2 and all(
                any(j.state == "RUNNING" for j in a.client.get_run(r.id).jobs) for r in runs
            )

        wait_until(both_run, 30, what="both gates to run")
        a.kill_master(signal.SIGKILL)
        b.wait_for_master(30)
        go.touch()
        assert procs["follow"].wait(120) == 0, (tmp_path / "follow.out").read_text()
        assert procs["run"].wait(120) == 0, (tmp_path / "run.out").read_text()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for out in outputs.values():
            out.close()
    followed = (tmp_path / "follow.out").read_text()
    assert "before" in followed and "after" in followed, followed
    assert followed.index("before") < followed.index("after"), followed


def test_a_standby_takes_over_when_the_leader_is_killed(
    standby_masters: tuple[ProcessCluster, ProcessCluster], tmp_path: Path
) -> None:
    """Kill -9 the leader mid-DAG: the standby leads once the lease runs out, adopts the running
    job from the worker (which dials the next master of its list) and finishes the run: nothing
    lost, nothing run twice, the log of what ran under the old leader served by the new one; a
    wait in flight rides it out."""
    a, b = standby_masters
    both = start_leader_and_standby(a, b)
    a.add_worker("w1", args=("--master", both))
    client = TitanClient(address=both, token=a.token)  # follows whichever leads
    go = tmp_path / "go"
    first = TitanJob("first", command=["echo", "under the first leader"])
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
    assert client.fetch_logs(f"{run}/first") == "under the first leader\n"
    client.close()


def test_a_service_runs_on_through_a_failover(standby_masters: tuple[ProcessCluster, ProcessCluster]) -> None:
    a, b = standby_masters
    both = start_leader_and_standby(a, b)
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


def test_masters_started_at_the_same_moment_elect_one(
    standby_masters: tuple[ProcessCluster, ProcessCluster],
) -> None:
    a, b = standby_masters
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
    standby_masters: tuple[ProcessCluster, ProcessCluster],
) -> None:
    import psycopg

    a, b = standby_masters
    start_leader_and_standby(a, b)
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
