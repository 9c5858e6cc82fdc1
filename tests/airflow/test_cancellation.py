"""Marking failed and clearing a running TitanOperator (deferred or not) and TitanPipelineOperator
the way Airflow users do, through the REST API of a real Airflow: api-server, scheduler,
dag-processor and triggerer run as child processes of the test.

What must hold: the Titan work of a task marked failed is cancelled (its processes gone), and a
cleared task's next try never runs beside the previous try's work.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.airflow.harness import AirflowServices, airflow_running, titan_cluster
from tests.helpers import ProcessCluster, pid_alive, wait_until
from titan_runtime import RunRecord

pytestmark = pytest.mark.integration
CANCEL_DAGS = Path(__file__).with_name("cancel_dags")
DAGS = ["titan_cancel_deferrable", "titan_cancel_sync", "titan_cancel_pipeline"]
TASK = "held"


@pytest.fixture(scope="module")
def cancel_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    with titan_cluster(tmp_path_factory.mktemp("cancel") / "titan", slots=4) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def airflow(
    cancel_cluster: ProcessCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowServices]:
    """A fresh Airflow with every component a deferrable task needs."""
    root = tmp_path_factory.mktemp("cancel_airflow")
    shutil.copytree(CANCEL_DAGS, root / "dags")
    components = ("scheduler", "dag-processor", "triggerer")
    with airflow_running(root / "home", cancel_cluster, root / "dags", components) as services:
        yield services


class Held:
    """One DAG run of a cancellation DAG, its Titan runs and the processes they started."""

    def __init__(self, airflow: AirflowServices, cluster: ProcessCluster, dag_id: str, folder: Path) -> None:
        self.airflow, self.cluster, self.dag_id, self.folder = airflow, cluster, dag_id, folder
        if dag_id == "titan_cancel_pipeline":  # the pipeline's job needs the folder too
            (airflow.dags_folder / "pipeline.yaml").write_text(
                f'name: held\njobs:\n  - id: hold\n    file: hold.py\n    args: "{folder}"\n'
            )
        run = airflow.api(
            "POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": {"dir": str(folder)}}
        )
        self.run_id = run["dag_run_id"]
        self.path = f"/dags/{dag_id}/dagRuns/{self.run_id}/taskInstances/{TASK}"

    def task(self) -> dict:
        return self.airflow.api("GET", self.path)

    def titan_runs(self) -> list[RunRecord]:
        """The Titan runs of this DAG run's tries, the first try's first."""
        runs = [
            r
            for r in self.cluster.client.list_runs(labels={"airflow.dag_id": self.dag_id})
            if r.labels.get("airflow.run_id") == self.run_id
        ]
        return sorted(runs, key=lambda r: int(r.labels["airflow.try_number"]))

    def pid(self, titan_run: RunRecord) -> int:
        """The pid of the process a Titan run's job started, once it has started."""
        path = self.folder / f"{titan_run.id}.pid"
        return int(wait_until(lambda: path.exists() and path.read_text(), 120, 0.05, what=f"{path}"))

    def started(self, tries: int) -> tuple[RunRecord, int]:
        """Wait until the `tries`-th try's Titan job runs."""
        runs = wait_until(
            lambda: len(self.titan_runs()) >= tries and self.titan_runs(), 180, 0.2, what=f"try {tries}"
        )
        return runs[tries - 1], self.pid(runs[tries - 1])

    def running(self, tries: int) -> tuple[RunRecord, int]:
        """Wait until the `tries`-th try's Titan job runs (and, deferrable, its trigger waits for it)."""
        titan_run, pid = self.started(tries)
        if self.dag_id == "titan_cancel_deferrable":  # deferred, its trigger taken by the triggerer
            wait_until(
                lambda: (ti := self.task())["state"] == "deferred" and ti.get("triggerer_job"),
                120,
                0.2,
                what="the deferred task's trigger to run",
            )
        return titan_run, pid

    def ended(self, titan_run: RunRecord) -> RunRecord:
        return wait_until(
            lambda: (r := self.cluster.client.get_run(titan_run.id)).terminal and r,
            120,
            0.1,
            what=f"{titan_run.id} to end",
        )


@pytest.mark.parametrize("dag_id", DAGS)
def test_marking_a_running_task_failed_cancels_its_titan_work(
    airflow: AirflowServices, cancel_cluster: ProcessCluster, tmp_path: Path, dag_id: str
) -> None:
    held = Held(airflow, cancel_cluster, dag_id, tmp_path / "held")
    titan_run, pid = held.running(1)
    marked = time.monotonic()
    airflow.api("PATCH", held.path, {"new_state": "failed"})
    wait_until(lambda: not pid_alive(pid), 60, 0.02, what=f"the job's process {pid} to be gone")
    print(f"{dag_id}: marked failed -> the job's process gone in {time.monotonic() - marked:.2f}s")
    ended = held.ended(titan_run)
    assert ended.state == "CANCELLED", (ended.state, ended.reason)
    assert held.task()["state"] == "failed"
    assert len(held.titan_runs()) == 1


@pytest.mark.parametrize("dag_id", DAGS)
def test_a_cleared_task_never_runs_beside_its_previous_try(
    airflow: AirflowServices, cancel_cluster: ProcessCluster, tmp_path: Path, dag_id: str
) -> None:
    held = Held(airflow, cancel_cluster, dag_id, tmp_path / "held")
    first, first_pid = held.running(1)
    airflow.api(
        "POST",
        f"/dags/{dag_id}/clearTaskInstances",
        {"dry_run": False, "dag_run_id": held.run_id, "task_ids": [TASK], "only_failed": False},
    )
    second, _ = held.running(2)
    assert not pid_alive(first_pid), "the next try's job started while the previous try's process ran"
    first_ended = held.ended(first)
    assert first_ended.state == "CANCELLED", (first_ended.state, first_ended.reason)
    [first_job] = cancel_cluster.client.get_run(first.id).jobs
    [second_job] = cancel_cluster.client.get_run(second.id).jobs
    assert first_job.ended_at <= second_job.attempts[0].assigned_at
    (held.folder / "gate").touch()
    assert held.ended(second).state == "SUCCEEDED"
    wait_until(lambda: held.task()["state"] == "success", 120, 0.2, what="the task to succeed")


def test_a_deferred_task_marked_failed_while_no_triggerer_runs_its_trigger(
    airflow: AirflowServices, cancel_cluster: ProcessCluster, tmp_path: Path
) -> None:
    """Airflow calls no on_kill here (nothing runs the trigger): the titan plugin's listener, in
    the api-server, cancels the job when the state is set by hand."""
    triggerer = airflow.procs["triggerer"].pid
    os.killpg(triggerer, signal.SIGSTOP)
    try:
        held = Held(airflow, cancel_cluster, "titan_cancel_deferrable", tmp_path / "held")
        titan_run, pid = held.started(1)
        wait_until(lambda: held.task()["state"] == "deferred", 120, 0.2, what="the task to defer")
        assert not held.task().get("triggerer_job")  # no triggerer has the trigger
        airflow.api("PATCH", held.path, {"new_state": "failed"})
        wait_until(lambda: not pid_alive(pid), 60, 0.02, what=f"the job's process {pid} to be gone")
        assert held.ended(titan_run).state == "CANCELLED"
    finally:
        os.killpg(triggerer, signal.SIGCONT)
