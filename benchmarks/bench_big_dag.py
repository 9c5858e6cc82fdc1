"""A layered 10,000-job DAG (100 layers of 100; each job depends on two of the layer before):
accepted in <= 2 s, runs to completion, master peak memory reported (target <= 300 MB).
Baseline: the master's peak memory before the submission, and the same rows inserted into SQLite."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

from _common import Timer, cluster, peak_rss_mb, table

from titan_runtime import TitanJob

LAYERS, WIDTH = 100, 100


def build() -> list[TitanJob]:
    jobs = []
    for layer in range(LAYERS):
        for i in range(WIDTH):
            parents = [f"l{layer - 1}_{i}", f"l{layer - 1}_{(i + 1) % WIDTH}"] if layer else None
            jobs.append(TitanJob(f"l{layer}_{i}", command=["/bin/true"], parents=parents))
    return jobs


def main() -> None:
    jobs = build()
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "b.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE jobs(run_id TEXT, job_id TEXT, data TEXT, PRIMARY KEY(run_id, job_id))")
        with Timer() as base:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO jobs VALUES('r', ?, ?)",
                [(j.id, json.dumps({"id": j.id, "parents": j.parent_ids})) for j in jobs],
            )
            db.execute("COMMIT")
    with cluster([("w1", 2), ("w2", 2)]) as c:
        idle_mb = peak_rss_mb(c.master.pid)
        with Timer() as accept:
            run = c.client.submit_dag("big", jobs)
        with Timer() as complete:
            record = run.wait()
        assert record.state == "SUCCEEDED", record.reason
        peak = peak_rss_mb(c.master.pid)
    table(
        f"layered DAG of {LAYERS * WIDTH:,} /bin/true jobs on 2 workers x 2 slots",
        [
            (
                "accepted in seconds",
                f"{accept.seconds:.2f}",
                f"{base.seconds:.3f}",
                f"{accept.seconds / base.seconds:.0f}",
                "<= 2 s",
            ),
            ("ran to completion in seconds", f"{complete.seconds:.1f}", "", "", ""),
            ("jobs per second", f"{LAYERS * WIDTH / complete.seconds:.0f}", "", "", ""),
            ("master peak RSS MB", f"{peak:.0f}", f"{idle_mb:.0f}", f"{peak / idle_mb:.1f}", "<= 300 MB"),
        ],
    )


if __name__ == "__main__":
    main()
