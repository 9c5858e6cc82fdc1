"""The SDK's own pieces, without a master: the DAG builder, job options, and the two clients' parity."""

from __future__ import annotations

import asyncio
import inspect
import socket

import pytest

from titan_runtime import (
    AsyncTitanClient,
    InvalidJob,
    TitanClient,
    TitanConnectionError,
    TitanError,
    TitanJob,
    TitanTimeoutError,
)
from titan_runtime.client import ops
from titan_runtime.client.records import StatusWord
from titan_runtime.proto import titan_pb2 as pb


def test_builder_links_parents_like_airflow() -> None:
    a, b, c, d = (TitanJob(name, command=["true"]) for name in "abcd")
    assert (a >> [b, c]) == [b, c]
    [b, c] >> d
    assert (b.parent_ids, c.parent_ids, d.parent_ids) == (["a"], ["a"], ["b", "c"])
    a >> b  # linking twice adds nothing
    assert b.parent_ids == ["a"]


def test_original_parameters_and_their_normal_forms() -> None:
    job = TitanJob(
        "train",
        "train.py",
        "RUN_PAYLOAD",
        "--epochs 3 --name 'two words'",
        ["prep"],
        0,
        False,
        10,
        500,
        True,
        "GPU",
    )
    assert job.arg_list == ["--epochs", "3", "--name", "two words"]
    assert (job.parent_ids, job.priority, job.delay, job.affinity_mode, job.tag_list) == (
        ["prep"],
        10,
        500,
        "hard",
        ["GPU"],
    )
    assert TitanJob(filename="dir/my-script.py").id == "my-script"
    assert TitanJob(command=["/usr/bin/env", "x"]).id == "env"
    assert TitanJob(command=["x"], map_over="gen").parent_ids == ["gen"]


@pytest.mark.parametrize(
    ("retries", "expected"),
    [
        (None, None),
        (2, {"attempts": 3}),
        (
            {"attempts": 3, "backoff": {"initial": 1, "factor": 3}},
            {"attempts": 3, "backoff_initial": 1.0, "backoff_factor": 3.0},
        ),
        (
            {"attempts": 2, "fallback": [{"requirement": "GPU"}, {"requirement": "GENERAL"}]},
            {"attempts": 2, "fallback": [["GPU"], []]},
        ),
    ],
)
def test_retry_policies(retries: object, expected: object) -> None:
    assert TitanJob(command=["x"], retries=retries).retry_policy() == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("retries", [-1, {"attempts": 2, "tries": 3}, {"backoff": "soon"}, True])
def test_bad_retry_policies_are_refused(retries: object) -> None:
    with pytest.raises(InvalidJob):
        TitanJob(command=["x"], retries=retries).retry_policy()  # type: ignore[arg-type]


def test_approval_from_the_original_vocabulary() -> None:
    assert TitanJob(command=["x"], hitl_message="ok?", max_wait_seconds=60).approval_gate() == {
        "message": "ok?",
        "timeout": 60.0,
    }
    assert TitanJob(command=["x"]).approval_gate() is None
    with pytest.raises(InvalidJob):
        TitanJob(command=["x"], approval={"timeout": -1}).approval_gate()


def test_the_asyncio_client_has_every_call_of_the_blocking_one() -> None:
    def calls(cls: type) -> set[str]:
        return {
            name
            for name, member in inspect.getmembers(cls)
            if not name.startswith("_") and (inspect.isfunction(member) or inspect.isasyncgenfunction(member))
        }

    assert calls(TitanClient) - {"close"} <= calls(AsyncTitanClient)


def test_a_wait_that_runs_out_raises_a_titan_error_that_is_a_timeout_error() -> None:
    op = ops.wait_job("r/j", timeout=0.0)
    call = next(op)
    assert call.method == "WaitJob"
    with pytest.raises(TitanTimeoutError, match="job r/j is still RUNNING after 0s") as raised:
        op.send(pb.JobInfo(id="j", run_id="r", state="RUNNING"))
    assert isinstance(raised.value, TitanError) and isinstance(raised.value, TimeoutError)


def test_add_iteration_takes_job_ids_or_the_jobs_themselves() -> None:
    a, b = TitanJob("a", command=["true"]), TitanJob("b", command=["true"])
    call = next(ops.add_iteration("r", [a, "c"], b, 3))
    assert (list(call.request.jobs), call.request.after) == (["a", "c"], "b")
    with pytest.raises(InvalidJob, match="expected a job id or a TitanJob, got int 7"):
        next(ops.add_iteration("r", [7], "b", 3))  # type: ignore[list-item]


def test_an_asyncio_client_may_be_made_before_its_event_loop_runs() -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = AsyncTitanClient(f"127.0.0.1:{port}", token="t", reconnect_timeout=0)

    async def use() -> None:
        try:
            with pytest.raises(TitanConnectionError, match="cannot reach the Titan master"):
                await client.get_job("x")
        finally:
            await client.close()

    asyncio.run(use())


def test_a_succeeded_status_also_reads_as_the_originals_completed() -> None:
    done, failed = StatusWord("SUCCEEDED"), StatusWord("FAILED")
    original = "COMPLETED"
    assert done == "SUCCEEDED" and done == original and original == done  # either side
    assert done in ("COMPLETED", "FAILED") and failed not in ("COMPLETED",)
    assert done != "FAILED" and (done != original) is False and failed != original
    assert StatusWord("READY") != "PENDING"  # a word Titan has too keeps Titan's meaning
    assert hash(done) == hash("SUCCEEDED") and {done: 1}["SUCCEEDED"] == 1


def test_the_sdks_final_states_are_the_cores() -> None:
    """The SDK keeps its own copy (it never imports the core's state machine): the same words."""
    from titan_runtime.client.records import TERMINAL_JOB_STATES, TERMINAL_RUN_STATES
    from titan_runtime.core.states import JobState, RunState

    assert {s.value for s in JobState if s.terminal} == TERMINAL_JOB_STATES
    assert {s.value for s in RunState if s is not RunState.RUNNING} == TERMINAL_RUN_STATES
