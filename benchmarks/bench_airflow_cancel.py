"""Marking a running Airflow task failed, to its Titan job's processes gone (issue 22).

A real Airflow (api-server, scheduler, dag-processor, triggerer, LocalExecutor) and a real Titan
cluster; each round starts a DAG run, waits until the task's Titan job runs (a deferred task: until
its trigger waits for it), marks the task failed through the REST API and times how long the job's
process lives on. The job exits on SIGTERM at once, so no kill grace is in the figure. Target for
the deferrable operator: <= 2 s plus the kill grace. Baseline: the same job cancelled through the
SDK directly (`cancel(wait=True)`), in the same rounds.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_airflow_cancel.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import table

from tests.airflow.harness import AirflowServices, airflow_running, titan_cluster
from tests.airflow.test_cancellation import CANCEL_DAGS, Held
from titan_runtime import TitanJob
from titan_runtime.testing import ProcessCluster, pid_alive, wait_until


def marked_failed_to_gone(
    airflow: AirflowServices, cluster: ProcessCluster, dag_id: str, folder: Path
) -> float:
    held = Held(airflow, cluster, dag_id, folder)
    titan_run, pid = held.running(1)
    start = time.monotonic()
    airflow.api("PATCH", held.path, {"new_state": "failed"})
    wait_until(lambda: not pid_alive(pid), 60, 0.01, what=f"process {pid} to be gone")
    gone = time.monotonic() - start
    assert held.ended(titan_run).state == "CANCELLED"
    return gone


def direct(cluster: ProcessCluster, folder: Path) -> float:
    """The floor: the same held job cancelled through the SDK, to its process gone."""
    hold = Path(CANCEL_DAGS / "hold.py")
    run = cluster.client.submit_dag(
        "direct", [TitanJob("hold", command=[sys.executable, str(hold), str(folder)])]
    )
    pid_file = folder / f"{run}.pid"
    pid = int(
        wait_until(lambda: pid_file.exists() and pid_file.read_text(), 60, 0.01, what="the job to start")
    )
    start = time.monotonic()
    cluster.client.cancel(run, wait=True)
    wait_until(lambda: not pid_alive(pid), 60, 0.01, what=f"process {pid} to be gone")
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"deferrable": [], "sync": [], "direct": []}
    with tempfile.TemporaryDirectory(prefix="titan-bench-airflow-") as tmp:
        root = Path(tmp)
        shutil.copytree(CANCEL_DAGS, root / "dags")
        components = ("scheduler", "dag-processor", "triggerer")
        with (
            titan_cluster(root / "titan", slots=4) as cluster,
            airflow_running(root / "home", cluster, root / "dags", components) as services,
        ):
            for n in range(args.rounds):  # the three in turn
                for name, dag_id in (
                    ("deferrable", "titan_cancel_deferrable"),
                    ("sync", "titan_cancel_sync"),
                ):
                    times[name].append(marked_failed_to_gone(services, cluster, dag_id, root / f"{name}{n}"))
                times["direct"].append(direct(cluster, root / f"direct{n}"))
    floor = statistics.median(times["direct"])

    def row(name: str, what: str, target: str) -> tuple[str, str, str, str, str]:
        got = times[name]
        median = statistics.median(got)
        return (
            what,
            f"{median:.2f} ({min(got):.2f}-{max(got):.2f})",
            f"{floor:.2f}",
            f"{median / floor:.1f}",
            target,
        )

    table(
        f"marked failed through the REST API -> the Titan job's process gone, seconds (median of {args.rounds};"
        " baseline: the SDK's cancel)",
        [
            row("deferrable", "deferrable TitanOperator", "<= 2 s + kill grace"),
            row("sync", "TitanOperator, not deferred", ""),
        ],
    )


if __name__ == "__main__":
    main()
