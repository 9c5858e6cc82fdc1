"""5,000 jobs submitted in one call: accepted (durably) in <= 1 s. The original accepted ~93/s.
Baseline: inserting the same 5,000 rows into SQLite in one transaction, the durability floor."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

from _common import Timer, cluster, table

from titan_runtime import TitanJob

N = 5000


def main() -> None:
    jobs = [TitanJob(f"j{i}", command=["true"]) for i in range(N)]
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "b.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE jobs(run_id TEXT, job_id TEXT, data TEXT, PRIMARY KEY(run_id, job_id))")
        rows = [
            ("r", f"j{i}", json.dumps({"id": f"j{i}", "command": ["true"], "state": "READY"}))
            for i in range(N)
        ]
        with Timer() as base:
            db.execute("BEGIN")
            db.executemany("INSERT INTO jobs VALUES(?, ?, ?)", rows)
            db.execute("COMMIT")
    with cluster([]) as c:  # no workers: measure acceptance alone
        with Timer() as titan:
            run = c.client.submit_dag("bulk", jobs)
        assert len(run.jobs()) == N
    table(
        f"{N} jobs in one submit_dag call (accepted = persisted and acknowledged)",
        [
            (
                "seconds",
                f"{titan.seconds:.3f}",
                f"{base.seconds:.3f}",
                f"{titan.seconds / base.seconds:.1f}",
                "<= 1.0 s",
            ),
            ("jobs per second", f"{N / titan.seconds:,.0f}", f"{N / base.seconds:,.0f}", "", "original: ~93"),
        ],
    )


if __name__ == "__main__":
    main()
