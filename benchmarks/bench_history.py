"""A master that has lived for months: what history costs it, and big runs.

1. History. A store holding N finished jobs (default 1,000,000: 100,000 runs of 10 jobs, one attempt
   each), written fast through the store API, against an empty store (the baseline) in the same run:
   the master's start to ready (restore, listen) and its memory then; `list_runs(50)` (what
   `runs --json --limit 50` asks) and `get_job` of a finished job by bare id (what `status JOB`
   asks), each the median of 20 calls. Targets: RSS <= 300 MB, start <= 2 s, list <= 100 ms,
   status <= 50 ms. Then `gc` deletes that whole history (it is older than the default 30 days)
   while /bin/true jobs run one after another: their submit-to-done time against the same before.
2. A 100,000-job DAG (independent /bin/true jobs) in one submit_dag call: accepted in <= 5 s with the
   master's RSS <= 500 MB, i.e. >= 20,000 jobs/s. Baseline: the same rows inserted into SQLite in one
   transaction by hand (the durability floor).
3. A 10,000-job run on 2 workers x 2 slots: `run-status RUN` (the command, interpreter start
   included, every job printed) <= 200 ms once it has ended, against `titan-runtime --version`
   (the interpreter's start and imports alone); paged (`--jobs FAILED --limit 20`) and the SDK's
   `get_run` beside it. The SDK's `wait` returns <= 1 s after the run's own end (created to ended,
   as the master records it).

    .venv/bin/python benchmarks/bench_history.py [--jobs 1000000] [--dag 100000] [--run 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import Timer, table

from titan_runtime import TitanJob
from titan_runtime.core.effects import Changes
from titan_runtime.core.model import JobSpec
from titan_runtime.store import SqliteStore
from titan_runtime.testing import ProcessCluster

JOBS_PER_RUN = 10


def rss_mb(pid: int, field: str = "VmRSS:") -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def fill(db: Path, jobs: int) -> None:
    """`jobs` finished jobs, in runs of JOBS_PER_RUN, each with one ended attempt."""
    store = SqliteStore(db, fsync=False)
    spec = JobSpec(id="x", command=("/bin/true",)).to_dict()
    runs = jobs // JOBS_PER_RUN
    t0 = 1_700_000_000.0
    batch = Changes()
    for r in range(runs):
        run_id = f"hist-{r:07d}"
        at = t0 + r
        batch.runs.append(
            {
                "id": run_id, "name": "history", "labels": {}, "agent_run_id": "", "state": "SUCCEEDED",
                "reason": "", "created_at": at, "ended_at": at + 1, "seq": r + 1,
                "counts": {"SUCCEEDED": JOBS_PER_RUN},
            }
        )  # fmt: skip
        for j in range(JOBS_PER_RUN):
            job_id = f"job-{j}"
            batch.new_jobs.append(
                {
                    "run_id": run_id, "job_id": job_id, "state": "SUCCEEDED", "created_at": at,
                    "started_at": at, "ended_at": at + 1, "exit_code": 0, "worker_id": "w-gone",
                    "spec": {**spec, "id": job_id},
                }
            )  # fmt: skip
            batch.attempts.append(
                {
                    "id": f"at-{r}-{j}", "run_id": run_id, "job_id": job_id, "number": 1, "worker_id": "w-gone",
                    "state": "SUCCEEDED", "assigned_at": at, "started_at": at, "ended_at": at + 1,
                    "exit_code": 0, "signal": "", "reason": "", "pid": 1, "log_size": 0, "host": "",
                    "ports": {}, "healthy": False, "void": False,
                }
            )  # fmt: skip
        if len(batch.new_jobs) >= 50_000 or r == runs - 1:
            store.write(batch)
            batch = Changes()
            print(f"  history: {(r + 1) * JOBS_PER_RUN:,} of {jobs:,} jobs written", end="\r", flush=True)
    print()
    store.close()


def median_ms(fn, n: int = 20) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        with Timer() as t:
            fn()
        times.append(t.seconds * 1000)
    return statistics.median(times)


def history_round(root: Path, jobs: int) -> dict[str, float]:
    c = ProcessCluster(root)
    c.data_dir.mkdir(parents=True)
    if jobs:
        fill(c.data_dir / "titan.db", jobs)
    try:
        with Timer() as start:
            c.start_master(timeout=300)
        assert c.master is not None
        out = {"start": start.seconds, "rss": rss_mb(c.master.pid)}
        client = c.client
        bare = "job-3"
        if not jobs:  # something to find in the baseline too
            client.submit_dag("history", [TitanJob(bare, command=["/bin/true"], tags=["nowhere"])])
        out["list"] = median_ms(lambda: client.list_runs(50))
        out["status"] = median_ms(lambda: client.get_job(bare))
        out["rss_after"] = rss_mb(c.master.pid)
        if jobs:
            out.update(collect_while_dispatching(c))
        return out
    finally:
        c.stop()


def chain_latency(client, stop: threading.Event | None = None, n: int = 20) -> list[float]:  # type: ignore[no-untyped-def]
    """Submit-to-done times of /bin/true jobs one after another (n of them, or until `stop`)."""
    times = []
    while (stop is None and len(times) < n) or (stop is not None and not stop.is_set()):
        with Timer() as t:
            client.wait(client.submit_job(TitanJob(command=["/bin/true"])), 60)
        times.append(t.seconds * 1000)
    return times


def collect_while_dispatching(c: ProcessCluster) -> dict[str, float]:
    """A collection of the whole history (it is older than the default 30 days) while jobs run one
    after another: how long it takes, and what it does to their latency."""
    c.add_worker("w1", slots=1)
    client = c.client
    quiet = chain_latency(client)
    stop = threading.Event()
    during: list[float] = []
    watcher = threading.Thread(target=lambda: during.extend(chain_latency(c.client, stop)))
    with Timer() as t:
        watcher.start()
        report = client.collect_garbage()
    stop.set()
    watcher.join()
    return {
        "gc_s": t.seconds,
        "gc_runs": report.runs,
        "quiet_ms": statistics.median(quiet),
        "during_ms": statistics.median(during),
        "during_max_ms": max(during),
    }


def dag_round(root: Path, n: int) -> dict[str, float]:
    jobs = [TitanJob(f"j{i}", command=["/bin/true"], tags=["nowhere"]) for i in range(n)]
    c = ProcessCluster(root)
    c.data_dir.mkdir(parents=True)
    try:
        c.start_master()
        assert c.master is not None
        with Timer() as t:
            c.client.submit_dag("big", jobs)
        return {"accept": t.seconds, "rss": rss_mb(c.master.pid, "VmHWM:")}
    finally:
        c.stop()


def sqlite_floor(root: Path, n: int) -> float:
    db = sqlite3.connect(root / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE jobs(run_id TEXT, job_id TEXT, spec TEXT, data TEXT, PRIMARY KEY(run_id, job_id))"
    )
    spec = JobSpec(id="x", command=("/bin/true",)).to_dict()
    rows = [
        ("big", f"j{i}", json.dumps({**spec, "id": f"j{i}"}), json.dumps({"state": "READY"}))
        for i in range(n)
    ]
    with Timer() as t:
        db.execute("BEGIN")
        db.executemany("INSERT INTO jobs VALUES(?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    db.close()
    return t.seconds


def in_terminal(argv: list[str], env: dict[str, str]) -> None:
    """Run a command with a terminal (a pseudo-terminal 200 columns wide) as its stdout and stderr,
    reading what it prints until it exits, as a terminal would."""
    leader, follower = os.openpty()
    proc = subprocess.Popen(argv, env={**env, "COLUMNS": "200"}, stdout=follower, stderr=follower)
    os.close(follower)
    try:
        while True:
            try:
                if not os.read(leader, 65536):
                    break
            except OSError:  # EIO: the command's end of the terminal is closed
                break
    finally:
        os.close(leader)
    assert proc.wait() == 0, argv


def run_round(root: Path, n: int) -> dict[str, float]:
    c = ProcessCluster(root)
    c.root.mkdir(parents=True)
    try:
        c.start_master()
        c.add_worker("w1", slots=2)
        c.add_worker("w2", slots=2)
        run = c.client.submit_dag(
            "ten-thousand", [TitanJob(f"j{i}", command=["/bin/true"]) for i in range(n)]
        )
        record = run.wait(timeout=3600)
        returned = time.time()
        assert record.state == "SUCCEEDED", record.state

        def command(*args: str, terminal: bool = False) -> float:
            times = []
            for _ in range(5):
                argv = [sys.executable, "-m", "titan_runtime", *args]
                with Timer() as t:
                    if terminal:
                        in_terminal(argv, c.env())
                    else:
                        subprocess.run(argv, env=c.env(), capture_output=True, text=True, check=True)
                times.append(t.seconds)
            return statistics.median(times)

        return {
            "own": record.ended_at - record.created_at,
            "late": returned - record.ended_at,
            "terminal": command("run-status", run.id, terminal=True),
            "status": command("run-status", run.id),
            "paged": command("run-status", run.id, "--jobs", "FAILED", "--limit", "20"),
            "version": command("--version"),
            "get_run": median_ms(lambda: c.client.get_run(run.id), 5) / 1000,
        }
    finally:
        c.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--dag", type=int, default=100_000)
    parser.add_argument("--run", type=int, default=10_000)
    parser.add_argument("--parts", default="history,dag,run", help="Which parts to run, comma-separated.")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory(prefix="titan-bench-") as tmp:
        root = Path(tmp)
        if "history" in parts:
            history_part(root, args.jobs)
        if "dag" in parts:
            dag_part(root, args.dag)
        if "run" in parts:
            run_part(root, args.run)


def history_part(root: Path, jobs: int) -> None:
    empty = history_round(root / "empty", 0)
    full = history_round(root / "full", jobs)
    table(
        f"History: a store of {jobs:,} finished jobs (baseline: an empty store)",
        [
            ("master start to ready (s)", f"{full['start']:.2f}", f"{empty['start']:.2f}",
             f"{full['start'] / empty['start']:.2f}", "<= 2 s"),
            ("master RSS after start (MB)", f"{full['rss']:.0f}", f"{empty['rss']:.0f}",
             f"{full['rss'] / empty['rss']:.2f}", "<= 300 MB"),
            ("list_runs(50) (ms)", f"{full['list']:.1f}", f"{empty['list']:.1f}",
             f"{full['list'] / empty['list']:.2f}", "<= 100 ms"),
            ("get_job(bare id) (ms)", f"{full['status']:.1f}", f"{empty['status']:.1f}",
             f"{full['status'] / empty['status']:.2f}", "<= 50 ms"),
            ("master RSS after the calls (MB)", f"{full['rss_after']:.0f}", f"{empty['rss_after']:.0f}",
             f"{full['rss_after'] / empty['rss_after']:.2f}", "<= 300 MB"),
        ],
    )  # fmt: skip
    table(
        f"Collecting the {full['gc_runs']:,.0f} runs (in {full['gc_s']:.1f} s) while /bin/true jobs run one after"
        " another (baseline: the same jobs before it)",
        [
            ("submit to done, median (ms)", f"{full['during_ms']:.1f}", f"{full['quiet_ms']:.1f}",
             f"{full['during_ms'] / full['quiet_ms']:.2f}", "dispatch not stalled"),
            ("submit to done, worst (ms)", f"{full['during_max_ms']:.1f}", f"{full['quiet_ms']:.1f}",
             f"{full['during_max_ms'] / full['quiet_ms']:.2f}", ""),
        ],
    )  # fmt: skip


def dag_part(root: Path, n: int) -> None:
    dag = dag_round(root / "dag", n)
    floor = sqlite_floor(root, n)
    rate = n / dag["accept"]
    table(
        f"A {n:,}-job DAG in one submit_dag call (baseline: the rows into SQLite by hand)",
        [
            ("accepted in (s)", f"{dag['accept']:.2f}", f"{floor:.2f}", f"{dag['accept'] / floor:.1f}", "<= 5 s"),
            ("jobs accepted per second", f"{rate:,.0f}", f"{n / floor:,.0f}", f"{rate / (n / floor):.2f}",
             ">= 20,000"),
            ("master peak RSS (MB)", f"{dag['rss']:.0f}", "", "", "<= 500 MB"),
        ],
    )  # fmt: skip


def run_part(root: Path, n: int) -> None:
    run = run_round(root / "run", n)
    table(
        f"A {n:,}-job run on 2 x 2 slots (baselines: `titan-runtime --version`, the interpreter's start;"
        " the run's own time)",
        [
            ("`run-status RUN` in a terminal: the counts, the first 100 jobs (s)", f"{run['terminal']:.2f}",
             f"{run['version']:.2f}", f"{run['terminal'] / run['version']:.2f}", "<= 0.2 s"),
            ("`run-status RUN` piped: every job (s)", f"{run['status']:.2f}", f"{run['version']:.2f}",
             f"{run['status'] / run['version']:.2f}", ""),
            ("`run-status RUN --jobs FAILED --limit 20` (s)", f"{run['paged']:.2f}", f"{run['version']:.2f}",
             f"{run['paged'] / run['version']:.2f}", ""),
            ("SDK get_run, every job (s)", f"{run['get_run']:.2f}", "", "", ""),
            ("SDK wait returns after the end (s)", f"{run['late']:.2f}", f"{run['own']:.1f}",
             f"{run['late'] / run['own']:.3f}", "<= 1 s"),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
