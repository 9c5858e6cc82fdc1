"""Python function tasks through a real master and worker: values, exceptions, futures as
arguments, map, asyncio and concurrent.futures, big results, timeouts, and the warm processes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import time

import pytest

from tests.helpers import ProcessCluster, wait_until
from titan_runtime import InvalidJob, RemoteError, TaskFailed, TitanClient, remote
from titan_runtime.client.functions import RemoteTraceback


def square(x: int) -> int:
    print("squaring", x)
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def pid() -> int:
    return os.getpid()


def boom(x: int) -> None:
    raise ValueError(f"bad {x}")


class Unpicklable(Exception):
    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise TypeError("not today")


def raise_unpicklable() -> None:
    raise Unpicklable("held a socket")


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def in_task() -> dict[str, str]:
    from titan_runtime import task

    task.store_put("seen", task.current().job_id)
    return {"job": task.current().job_id, "cwd": os.getcwd(), "kv": str(task.store_get("seen"))}


@remote(slots=1)
def cube(x: int) -> int:
    return x**3


def test_a_function_runs_in_a_warm_process_and_its_output_is_its_log(cluster: ProcessCluster) -> None:
    client = cluster.client
    future = client.submit_fn(square, 7)
    assert future.result(timeout=60) == 49
    job = client.get_job(future.ref)
    assert job.state == "SUCCEEDED"
    assert list(client.read_logs(future.ref)) == ["squaring 7"]
    run = client.get_run(future.run_id)
    assert run.labels == {"titan.functions": "1"} and run.state == "RUNNING"  # held open for more
    pids = {client.submit_fn(pid).result(timeout=60) for _ in range(5)}
    assert len(pids) == 1  # one after another: the same warm process each time
    assert client.get_result(future.ref)["titan.python"]  # an envelope any tool can show
    assert client.function_result(future.ref) == 49  # for a caller that no longer holds the future
    shown = cluster.cli("result", future.ref)
    assert shown.returncode == 0 and '"titan.python"' in shown.stdout
    assert "a Python value" in shown.stderr and "function_result" in shown.stderr
    inside = client.submit_fn(in_task).result(timeout=60)
    assert inside["job"] == inside["kv"] and inside["cwd"] != "/"  # the task's own workspace and SDK


def test_an_exception_is_raised_again_with_its_remote_traceback(cluster: ProcessCluster) -> None:
    client = cluster.client
    future = client.submit_fn(boom, 3)
    with pytest.raises(ValueError, match="bad 3") as caught:
        future.result(timeout=60)
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in boom" in cause.text and "fn_main" not in cause.text
    job = client.get_job(future.ref)
    assert job.state == "FAILED" and job.reason == "ValueError: bad 3"
    assert "ValueError: bad 3" in "\n".join(client.read_logs(future.ref))
    with pytest.raises(ValueError, match="bad 3"):
        client.function_result(future.ref)
    with pytest.raises(RemoteError, match="Unpicklable: held a socket"):
        client.submit_fn(raise_unpicklable).result(timeout=60)


def test_futures_passed_as_arguments_are_parents_resolved_on_the_cluster(cluster: ProcessCluster) -> None:
    client = cluster.client
    a, b = client.submit_fn(square, 3), client.submit_fn(square, 4)
    total = client.submit_fn(add, a, b=b)
    assert total.result(timeout=60) == 25
    assert total.run_id == a.run_id
    assert sorted(client.get_job(total.ref).parents) == sorted([a.job_id, b.job_id])
    failed = client.submit_fn(boom, 1)
    after = client.submit_fn(add, failed, 1)
    with pytest.raises(TaskFailed, match="upstream failed"):
        after.result(timeout=60)


def test_map_and_concurrent_futures_and_asyncio(cluster: ProcessCluster) -> None:
    client = cluster.client
    futures = client.map(square, range(40))
    assert [f.result(timeout=60) for f in futures] == [x * x for x in range(40)]
    more = client.map(add, range(10), range(10, 20))
    done, not_done = concurrent.futures.wait(more, timeout=60)
    assert not not_done and sorted(f.result() for f in done) == [
        a + b for a, b in zip(range(10), range(10, 20), strict=True)
    ]
    assert sorted(
        f.result() for f in concurrent.futures.as_completed(client.map(square, [5, 6]), timeout=60)
    ) == [25, 36]

    async def gather() -> list[int]:
        return list(await asyncio.gather(*client.map(square, [1, 2, 3])))

    assert asyncio.run(gather()) == [1, 4, 9]
    assert cube(2) == 8  # still a plain function
    with TitanClient(address=cluster.address, token=cluster.token) as other:
        made = remote(client=other)(square)
        assert made.submit(9).result(timeout=60) == 81
        assert [f.result(timeout=60) for f in made.options(slots=2).map([1, 2])] == [1, 4]


def test_a_big_result_comes_back_as_an_artifact(cluster: ProcessCluster) -> None:
    client = cluster.client
    blob = client.submit_fn(os.urandom, 3 * 1024 * 1024)
    value = blob.result(timeout=60)
    assert len(value) == 3 * 1024 * 1024
    assert "titan.python.artifact" in client.get_result(blob.ref)
    assert client.submit_fn(len, blob).result(timeout=60) == 3 * 1024 * 1024  # and as an argument


def test_a_timeout_or_cancel_kills_the_tasks_process_and_later_tasks_get_a_new_one(
    cluster: ProcessCluster,
) -> None:
    client = cluster.client
    first = client.submit_fn(pid).result(timeout=60)
    slow = client.submit_fn(sleep_for, 60, timeout=1)
    with pytest.raises(TaskFailed, match="timed out after 1s"):
        slow.result(timeout=60)
    cancelled = client.submit_fn(sleep_for, 60)
    wait_until(lambda: client.get_job(cancelled.ref).state == "RUNNING", 30, what="the task to run")
    assert cancelled.cancel() and cancelled.cancelled()
    wait_until(lambda: client.get_job(cancelled.ref).state == "CANCELLED", 30, what="the cancel")
    again = client.submit_fn(pid).result(timeout=60)
    assert again != first  # the killed processes were not kept


def test_each_run_has_its_own_warm_processes(cluster: ProcessCluster) -> None:
    with (
        TitanClient(address=cluster.address, token=cluster.token) as one,
        TitanClient(address=cluster.address, token=cluster.token) as two,
    ):
        a, b = one.submit_fn(pid), two.submit_fn(pid)
        assert a.run_id != b.run_id
        assert a.result(timeout=60) != b.result(timeout=60)


def test_a_session_run_that_ended_is_followed_by_a_new_one(cluster: ProcessCluster) -> None:
    client = cluster.client
    client.functions.open_for = 0.0  # no hold: the run ends with its last task
    first = client.submit_fn(square, 2)
    assert first.result(timeout=60) == 4
    wait_until(lambda: client.get_run(first.run_id).state == "SUCCEEDED", 30, what="the run to end")
    second = client.submit_fn(add, first, 1)  # its parent's run has ended: passed by value
    assert second.result(timeout=60) == 5 and second.run_id != first.run_id


def test_futures_ride_out_a_master_restart(cluster: ProcessCluster) -> None:
    client = cluster.client
    before = client.submit_fn(square, 5)
    assert before.result(timeout=60) == 25
    slow = client.submit_fn(sleep_for, 2)
    wait_until(lambda: client.get_job(slow.ref).state == "RUNNING", 30, what="the task to run")
    cluster.kill_master(signal.SIGKILL)
    cluster.start_master()  # the same port: the client and the worker find it again
    assert slow.result(timeout=60) == 2  # its worker ran it through and reported after
    after = client.submit_fn(add, before, 1)  # the session run was restored, held open
    assert after.result(timeout=60) == 26 and after.run_id == before.run_id


def test_a_task_whose_worker_dies_runs_again_elsewhere(cluster: ProcessCluster) -> None:
    cluster.add_worker("w2", slots=2)
    client = cluster.client
    wait_until(lambda: len(client.list_workers()) == 2, 30, what="two workers")
    slow = client.submit_fn(sleep_for, 3)
    wait_until(lambda: client.get_job(slow.ref).state == "RUNNING", 30, what="the task to run")
    cluster.stop_worker(client.get_job(slow.ref).worker_name, signal.SIGKILL)
    assert slow.result(timeout=90) == 3
    assert len(client.get_job(slow.ref).attempts) == 2


def half(x: int) -> float:
    if x == 3:
        raise ZeroDivisionError("three is right out")
    return x / 2


def test_map_in_chunks_makes_fewer_jobs_and_keeps_a_future_per_item(cluster: ProcessCluster) -> None:
    client = cluster.client
    futures = client.map(half, range(10), chunksize=4)
    assert len(futures) == 10 and len({f.job_id for f in futures}) == 3  # 4 + 4 + 2 items
    with pytest.raises(ZeroDivisionError, match="three is right out") as caught:
        futures[3].result(timeout=60)  # its own exception; the chunk's other items are values
    assert "in half" in caught.value.__cause__.text and "run_chunk" not in caught.value.__cause__.text
    assert [f.result(timeout=60) for i, f in enumerate(futures) if i != 3] == [
        x / 2 for x in range(10) if x != 3
    ]
    assert client.get_job(futures[0].ref).state == "SUCCEEDED"  # the chunk's job ran to its end
    with pytest.raises(InvalidJob, match="takes values, not futures"):
        client.map(half, [futures[0]], chunksize=2)
    chunked = remote(client=client)(square).options(chunksize=3)
    assert [f.result(timeout=60) for f in chunked.map([1, 2, 3, 4])] == [1, 4, 9, 16]
    assert chunked.submit(5).result(timeout=60) == 25  # chunksize is map's alone
