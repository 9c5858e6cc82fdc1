"""The master on PostgreSQL against SQLite, in turns (issue 25): 5,000 jobs accepted in one call, 200
no-op jobs on one worker with 2 slots, and a 50-job chain's overhead per hop.

PostgreSQL is a server this script starts (initdb into a temp dir, as the tests do: root, and
Debian's postgresql), on the same 2 cores, with its default durability (fsync and synchronous
commit on); SQLite with the master's default, an fsync per group commit. Each round runs each
store on a cluster of its own and a fresh database.

    .venv/bin/python benchmarks/bench_postgres.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _common import Timer, cluster, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hosts import PostgresServer
from titan_runtime import TitanJob
from titan_runtime.testing import ProcessCluster


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    why = PostgresServer.available()
    if why:
        sys.exit(f"cannot start PostgreSQL here: {why}")
    got: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="titan-bench-pg-") as tmp:
        Path(tmp).chmod(0o755)
        server = PostgresServer(Path(tmp) / "pg")
        try:
            for r in range(args.rounds):
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
    rows = []
    for name, (_, fmt) in MEASURES.items():
        pg, lite = statistics.median(got[(name, "postgres")]), statistics.median(got[(name, "sqlite")])
        rows.append((name, fmt.format(pg), fmt.format(lite), f"{pg / lite:.2f}", ""))
    table(
        f"the master on PostgreSQL (titan) against SQLite (baseline), medians of {args.rounds} rounds", rows
    )


if __name__ == "__main__":
    main()
