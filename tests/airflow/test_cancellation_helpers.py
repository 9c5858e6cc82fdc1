"""The pieces that stop a killed or cleared task's Titan work, without Airflow: the trigger's wait
that keeps Airflow's cancellation message, and the cancelling of an earlier try's run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster, pid_alive, wait_until
from titan_airflow.cancellation import SUPERSEDED, cancel_earlier_tries, keeping_cancel_message
from titan_airflow.naming import run_labels, titan_run_id
from titan_runtime import TitanJob

MESSAGE = "__airflow_user_action__"


async def like_grpc(waiting: asyncio.Event) -> None:
    """Waits as a gRPC aio call does: cancelled, it raises a CancelledError of its own, without the message."""
    try:
        waiting.set()  # nothing yields between this and the wait below
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        raise asyncio.CancelledError() from None


async def cancelled_with_message(wait: object) -> tuple[object, ...]:
    """The args of the CancelledError a task awaiting `wait(waiting)` ends with when cancelled with
    MESSAGE once the gRPC-like call in it waits."""
    waiting = asyncio.Event()
    task = asyncio.ensure_future(wait(waiting))  # type: ignore[operator]
    await waiting.wait()
    task.cancel(MESSAGE)
    try:
        await task
    except asyncio.CancelledError as exc:
        return exc.args
    raise AssertionError("not cancelled")


def test_a_grpc_wait_loses_airflows_message_and_the_shielded_wait_keeps_it() -> None:
    assert asyncio.run(cancelled_with_message(like_grpc)) == ()  # what made on_kill never run
    inner: list[asyncio.Future[None]] = []

    async def kept(waiting: asyncio.Event) -> None:
        inner.append(asyncio.ensure_future(like_grpc(waiting)))
        await keeping_cancel_message(inner[0])

    assert asyncio.run(cancelled_with_message(kept)) == (MESSAGE,)
    assert inner[0].cancelled()  # and the wait itself was stopped


def test_a_result_goes_through_unchanged() -> None:
    async def answer() -> int:
        return 42

    async def main() -> int:
        return await keeping_cancel_message(asyncio.ensure_future(answer()))

    assert asyncio.run(main()) == 42


@pytest.mark.integration
def test_only_the_running_runs_of_earlier_tries_of_the_same_task_instance_are_cancelled(
    make_cluster: object, tmp_path: Path
) -> None:
    cluster: ProcessCluster = make_cluster()  # type: ignore[operator]
    cluster.add_worker("w1", slots=4)
    gate = tmp_path / "gate"
    hold = ["python3", "-c", f"import os,time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)"]

    def submit(task: str, run: str, attempt: int, map_index: int = -1) -> str:
        key = ("etl", task, run, attempt, map_index)
        return cluster.client.submit_dag(
            "t", [TitanJob("j", command=hold)], run_id=titan_run_id(*key), labels=run_labels(*key)
        )

    first = submit("load", "r1", 1)
    other_task, other_run, other_index = (
        submit("clean", "r1", 1),
        submit("load", "r2", 1),
        submit("load", "r1", 1, 0),
    )
    for run in (first, other_task, other_run, other_index):
        wait_until(lambda run=run: cluster.client.get_job(f"{run}/j").state == "RUNNING", what=run)
    pid = cluster.client.get_job(f"{first}/j").attempts[0].pid

    assert cancel_earlier_tries(cluster.client, ("etl", "load", "r1", 1, -1)) == []  # not earlier
    assert cancel_earlier_tries(cluster.client, ("etl", "load", "r1", 2, -1)) == [first]
    assert not pid_alive(pid)  # gone before it returned
    cancelled = cluster.client.get_job(f"{first}/j")
    assert cancelled.state == "CANCELLED" and cancelled.reason.startswith(SUPERSEDED)  # its trigger reads it
    for run in (other_task, other_run, other_index):
        assert cluster.client.get_job(f"{run}/j").state == "RUNNING"
    gate.touch()
