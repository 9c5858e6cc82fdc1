"""Chaos: a 300-job DAG while workers are killed (and replaced) and the master is killed twice.

Afterwards, from the store's own records: every job SUCCEEDED, each committed exactly once, and
no attempt was assigned before all of the job's parents had committed. The autouse fixture checks
that no process was left behind.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from titan_runtime import TitanConnectionError, TitanJob
from titan_runtime.core.model import Attempt, AttemptState, Job, JobState
from titan_runtime.store import SqliteStore
from titan_runtime.testing import ProcessCluster

pytestmark = pytest.mark.integration

LAYERS, WIDTH = 30, 10


def chaos_dag(seed: int) -> list[TitanJob]:
    rng = random.Random(seed)
    jobs = []
    for layer in range(LAYERS):
        for i in range(WIDTH):
            parents = (
                sorted({f"l{layer - 1}_{rng.randrange(WIDTH)}" for _ in range(rng.randint(1, 2))})
                if layer
                else None
            )
            jobs.append(
                TitanJob(
                    f"l{layer}_{i}",
                    command=["sh", "-c", f"sleep 0.0{rng.randint(1, 9)}"],
                    parents=parents,
                    retries={"attempts": 1, "max_lost": 100},
                )
            )
    return jobs


def test_chaos_keeps_every_guarantee(make_cluster, tmp_path: Path) -> None:
    rng = random.Random(7)
    cluster: ProcessCluster = make_cluster(
        master_args=("--heartbeat-interval", "0.25", "--lease-timeout", "2")
    )
    names = iter(f"w{n}" for n in range(1000))
    for _ in range(3):
        cluster.add_worker(next(names), slots=2)
    run = cluster.client.submit_dag("chaos", chaos_dag(seed=7))
    master_kills = 0
    deadline = time.monotonic() + 240
    state = "RUNNING"
    while state == "RUNNING":
        assert time.monotonic() < deadline, "the chaos run did not finish in time"
        time.sleep(rng.uniform(0.2, 0.6))
        roll = rng.random()
        if master_kills < 2 and roll < 0.25:
            cluster.kill_master(signal.SIGKILL)
            master_kills += 1
            time.sleep(rng.uniform(0.0, 0.5))
            cluster.start_master()  # same data dir and port; workers reconnect on their own
            cluster._client = None
        elif roll < 0.7 and cluster.workers:
            victim = rng.choice(sorted(cluster.workers))
            proc = cluster.workers.pop(victim)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            cluster.add_worker(next(names), slots=2, wait=False)
        try:
            state = cluster.client.get_run(run).state
        except TitanConnectionError:
            continue
    while master_kills < 2:  # the run was quicker than the chaos: kill the master on a finished run too
        cluster.kill_master(signal.SIGKILL)
        master_kills += 1
        cluster.start_master()
        cluster._client = None
    assert cluster.client.get_run(run).state == "SUCCEEDED"
    cluster.stop()

    store = SqliteStore(cluster.data_dir / "titan.db")  # what was committed, read as the master does
    snapshot = store.read_run(run)
    store.close()
    assert snapshot is not None
    jobs = {job.id: job for job in map(Job.from_row, snapshot.jobs)}
    attempts = [Attempt.from_row(row) for row in snapshot.attempts]
    assert len(jobs) == LAYERS * WIDTH
    assert all(job.state is JobState.SUCCEEDED for job in jobs.values())
    succeeded = [a.job_id for a in attempts if a.state is AttemptState.SUCCEEDED]
    assert sorted(succeeded) == sorted(jobs), "each job must be committed exactly once"
    for attempt in attempts:
        parents = jobs[attempt.job_id].parents
        committed = max((jobs[p].ended_at for p in parents), default=0.0)
        assert attempt.assigned_at >= committed, (attempt, parents)
    lost = sum(1 for a in attempts if a.state is AttemptState.LOST)
    print(
        f"chaos: {len(attempts)} attempts for {len(jobs)} jobs, {lost} lost, master killed {master_kills} times"
    )
