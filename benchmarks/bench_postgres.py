"""The master on PostgreSQL against SQLite, in turns (issue 25): 5,000 jobs accepted in one call, 200
no-op jobs on one worker with 2 slots, and a 50-job chain's overhead per hop; and the failover time
of two masters on one database (leader kill -9 to a job running on the new leader).

PostgreSQL is a server this script starts (initdb into a temp dir, as the tests do: root, and
Debian's postgresql), on the same 2 cores, with its default durability (fsync and synchronous
commit on); SQLite with the master's default, an fsync per group commit. Each round runs each
store on a cluster of its own and a fresh database.

    .venv/bin/python benchmarks/bench_postgres.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import Timer, cluster, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hosts import PostgresServer
from titan_runtime import TitanClient, TitanJob
from titan_runtime.testing import ProcessCluster, wait_until


def accept_5000(c: ProcessCluster) -> float:
    jobs = [TitanJob(f"j{i}", command=["true"]) for i in range(5000)]
    with Timer() as t:
        c.client.submit_dag("bulk", jobs)
    return t.seconds


def noop_200(c: ProcessCluster) -> float:
    jobs = [TitanJob(f"j{i}", command=["true"]) for i in range(200)]
    with Timer() as t:
        assert c.client.submit_dag("noop", jobs).wait().state == "SUCCEEDED"
    return t.seconds


def chain_hop_ms(c: ProcessCluster) -> float:
    jobs = [TitanJob(f"j{i}", command=["true"], parents=[f"j{i - 1}"] if i else None) for i in range(50)]
    with Timer() as t:
        assert c.client.submit_dag("chain", jobs).wait().state == "SUCCEEDED"
    return t.seconds / 50 * 1000


#: In this order: the 5,000 jobs accepted last, since they then run on the worker.
MEASURES: dict[str, tuple[Callable[[ProcessCluster], float], str]] = {
    "200 no-op jobs, 1 worker x 2 slots, s": (noop_200, "{:.3f}"),
    "50-job chain, ms per hop (all of it)": (chain_hop_ms, "{:.2f}"),
    "5,000 jobs accepted in one call, s": (accept_5000, "{:.3f}"),
}


def failover_seconds(server: PostgresServer, root: Path, ttl: float) -> float:
    """Two masters on one database and a worker that knows both; kill -9 the leader, then submit
    a job through a client that knows both: seconds from the kill to the job running."""
    url = server.new_database()
    a = ProcessCluster(root / "a", store=url, master_args=("--lease-ttl", str(ttl)))
    b = ProcessCluster(root / "b", store=url, master_args=("--lease-ttl", str(ttl)))
    try:
        a.root.mkdir(parents=True)
        a.start_master()
        b.data_dir.mkdir(parents=True)
        shutil.copy2(a.data_dir / "token", b.data_dir / "token")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            b.port = s.getsockname()[1]
        b.start_master(wait=False)
        wait_until(lambda: "standby: the master" in b.master_log(), 30, what="a standby")
        both = f"{a.address},127.0.0.1:{b.port}"
        a.add_worker("w1", args=("--master", both))
        with TitanClient(address=both, token=a.token) as client:
            client.wait(client.submit_job(TitanJob(command=["true"])), 30)
            killed = time.monotonic()
            a.kill_master(signal.SIGKILL)
            ref = client.submit_job(TitanJob(command=["sleep", "5"]), run_id=f"after-{killed:.0f}")
            wait_until(lambda: client.get_job(ref).state == "RUNNING", 60, what="the job to run")
            return time.monotonic() - killed
    finally:
        a.stop()
        b.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--failover-only", action="store_true", help="only the failover time")
    args = parser.parse_args()
    why = PostgresServer.available()
    if why:
        sys.exit(f"cannot start PostgreSQL here: {why}")
    got: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="titan-bench-pg-") as tmp:
        Path(tmp).chmod(0o755)
        server = PostgresServer(Path(tmp) / "pg")
        try:
            failovers = [failover_seconds(server, Path(tmp) / f"fo{r}", 3.0) for r in range(args.rounds)]
            for r in range(0 if args.failover_only else args.rounds):
                stores = ["sqlite", "postgres"] if r % 2 == 0 else ["postgres", "sqlite"]
                for store in stores:
                    url = server.new_database() if store == "postgres" else "sqlite"
                    with cluster([("w1", 2)], store=url) as c:
                        c.client.wait(c.client.submit_job(TitanJob(command=["true"])))  # warm
                        for name, (measure, _) in MEASURES.items():
                            got.setdefault((name, store), []).append(measure(c))
                print(f"round {r + 1} done", flush=True)
        finally:
            server.stop()
    rows = [
        ("leader kill -9 to a new job running (lease 3 s)", f"{statistics.median(failovers):.2f} s "
         f"({min(failovers):.2f}-{max(failovers):.2f})", "", "", "<= 5 s"),
    ]  # fmt: skip
    for name, (_, fmt) in MEASURES.items() if got else ():
        pg, lite = statistics.median(got[(name, "postgres")]), statistics.median(got[(name, "sqlite")])
        rows.append((name, fmt.format(pg), fmt.format(lite), f"{pg / lite:.2f}", ""))
    table(
        f"the master on PostgreSQL (titan) against SQLite (baseline), medians of {args.rounds} rounds", rows
    )


if __name__ == "__main__":
    main()
