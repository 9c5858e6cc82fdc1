"""Recovery times.

- kill -9 of the worker running a job -> the job running on another worker. Target <= 1 s
  (Ray: 20-55 s to declare a node dead; Nomad ~20 s; the original Titan never requeued).
- a partition (the worker's link cut in a network namespace; SIGSTOP when not root) -> the job running
  elsewhere. Target <= lease + 1 s. Baseline: the lease itself.
- master kill -9 and restart with 10,000 jobs in the store -> recovered and dispatching again.
  Target <= 3 s. Baseline: the same master starting on an empty store.
"""

from __future__ import annotations

import signal
import statistics
import tempfile
import time
from pathlib import Path

from _common import table

from tests.hosts import NetworkNamespace
from titan_runtime import TitanJob
from titan_runtime.testing import ProcessCluster, wait_until

LEASE = 2.0
ROUNDS = 5


def second_start(client, job_id: str) -> float:  # type: ignore[no-untyped-def]
    record = wait_until(
        lambda: (lambda r: r if len(r.attempts) > 1 and r.attempts[1].started_at else None)(
            client.get_job(job_id)
        ),
        60,
    )
    return record.attempts[1].started_at


def kill_worker_round(tmp: Path, n: int) -> float:
    c = ProcessCluster(tmp / f"kill{n}")
    c.root.mkdir()
    try:
        c.start_master()
        c.add_worker("victim", slots=1)
        job = c.client.submit_job(TitanJob(command=["sleep", "30"]))
        wait_until(lambda: c.client.get_job(job).state == "RUNNING")
        c.add_worker("spare", slots=1)
        victim = c.workers.pop("victim")
        killed = time.time()
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        return second_start(c.client, job) - killed
    finally:
        c.stop()


def partition_round(tmp: Path, n: int) -> tuple[float, str]:
    why = NetworkNamespace.available()
    ns = NetworkNamespace() if why is None else None
    args = ("--heartbeat-interval", "0.25", "--lease-timeout", str(LEASE))
    c = ProcessCluster(
        tmp / f"part{n}", master_args=(*args, "--bind", ns.host_ip, "--insecure") if ns else args
    )
    c.root.mkdir()
    try:
        c.start_master()
        c.add_worker("cut-off", slots=1, prefix=ns.prefix if ns else ())
        job = c.client.submit_job(TitanJob(command=["sleep", "30"]))
        wait_until(lambda: c.client.get_job(job).state == "RUNNING")
        c.add_worker("spare", slots=1)
        start = time.time()
        if ns:
            ns.cut()
        else:
            c.workers["cut-off"].send_signal(signal.SIGSTOP)
        took = second_start(c.client, job) - start
        if ns:
            ns.heal()
        else:
            c.workers["cut-off"].send_signal(signal.SIGCONT)
        return took, "network namespace" if ns else "SIGSTOP"
    finally:
        c.stop()
        if ns:
            ns.close()


def master_restart(tmp: Path, jobs: int, n: int) -> float:
    c = ProcessCluster(tmp / f"restart{jobs}-{n}")
    c.root.mkdir()
    try:
        c.start_master()
        if jobs:
            c.client.submit_dag(
                "backlog", [TitanJob(f"j{i}", command=["true"], requirement="NOWHERE") for i in range(jobs)]
            )
        c.add_worker("w", slots=1)
        c.kill_master(signal.SIGKILL)
        start = time.perf_counter()
        c.start_master(timeout=120)
        c._client = None
        probe = c.client.submit_job(TitanJob(command=["true"]))
        assert c.client.wait(probe, 120).state == "SUCCEEDED"
        return time.perf_counter() - start
    finally:
        c.stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kills = [kill_worker_round(root, n) for n in range(ROUNDS)]
        partitions = [partition_round(root, n) for n in range(ROUNDS)]
        empty = statistics.median(master_restart(root, 0, n) for n in range(3))
        full = statistics.median(master_restart(root, 10_000, n) for n in range(3))

    how = partitions[0][1]
    part = statistics.median(p[0] for p in partitions)
    table(
        "recovery (median of runs; seconds)",
        [
            ("worker kill -9 -> job running elsewhere", f"{statistics.median(kills):.2f}", "", "", "<= 1 s"),
            (
                f"partition ({how}) -> job running elsewhere",
                f"{part:.2f}",
                f"{LEASE:.2f} (lease)",
                f"{part / LEASE:.2f}",
                f"<= {LEASE + 1:.0f} s",
            ),
            (
                "master kill -9 + restart, 10,000 jobs stored -> dispatching",
                f"{full:.2f}",
                f"{empty:.2f} (empty store)",
                f"{full / empty:.1f}",
                "<= 3 s",
            ),
        ],
    )


if __name__ == "__main__":
    main()
