"""Function tasks in the core: their specs, the parents' results they are handed, the exception a
failed one keeps, and the session run held open for more (open_for)."""

from __future__ import annotations

import pytest

from tests.unit.test_core_cluster import FAIL, OK, assigns, finish, hello, persist, restored, spec
from titan_runtime.core.cluster import ClusterConfig, ClusterState
from titan_runtime.core.effects import AttemptExit
from titan_runtime.core.model import InvalidSpec, JobSpec, JobState, RunState
from titan_runtime.core.names import MAX_CALL_CHARS, MAX_OPEN_FOR
from titan_runtime.store import MemoryStore


def fn(job_id: str, parents: tuple[str, ...] = (), **kw: object) -> JobSpec:
    return JobSpec(id=job_id, kind="function", call="Y2FsbA==", parents=parents, **kw)  # type: ignore[arg-type]


@pytest.fixture
def state() -> ClusterState:
    return ClusterState(ClusterConfig(lease_timeout=1e6))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (JobSpec(id="f", kind="function"), "needs its call"),
        (JobSpec(id="f", kind="function", call="x" * (MAX_CALL_CHARS + 1)), "over the 1,048,576 limit"),
        (JobSpec(id="f", kind="function", call="x", command=("true",)), "not a script or command"),
        (JobSpec(id="f", call="x", command=("true",)), "call is for function tasks"),
        (JobSpec(id="f", kind="function", call="x", branch=True), "for batch jobs"),
        (JobSpec(id="f", kind="lambda", call="x"), "unknown kind 'lambda'"),
    ],
)
def test_a_function_spec_is_checked(bad: JobSpec, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        bad.validate()


def test_a_function_task_is_handed_its_parents_results(state: ClusterState) -> None:
    state.worker_connected(hello("w", slots=2), 0)
    state.submit_run("r", "", [fn("a"), spec("b"), fn("c", ("a", "b"))], 0)
    first = {a.job_id: a for a in assigns(state)}
    assert first["a"].inputs == {}
    finish(state, first["a"], AttemptExit("succeeded", 0, result='{"titan.python": "AA=="}'))
    finish(state, first["b"])  # a command job without a result: nothing to hand over
    (c,) = assigns(state)
    assert c.inputs == {"a": '{"titan.python": "AA=="}'}


def test_a_failed_function_task_keeps_its_exception_for_the_caller(state: ClusterState) -> None:
    state.worker_connected(hello("w"), 0)
    state.submit_run("r", "", [fn("a")], 0)
    (a,) = assigns(state)
    error = '{"titan.python.error": "", "type": "ValueError", "message": "bad"}'
    finish(state, a, AttemptExit("failed", 1, reason="ValueError: bad", result=error))
    job = state.resolve("r/a")
    assert job.state is JobState.FAILED and job.result == error and job.reason == "ValueError: bad"


def test_an_unreadable_result_of_a_failed_task_is_dropped(state: ClusterState) -> None:
    state.worker_connected(hello("w"), 0)
    state.submit_run("r", "", [fn("a")], 0)
    (a,) = assigns(state)
    finish(state, a, AttemptExit("failed", 1, result="not json"))
    assert state.resolve("r/a").result is None


def test_a_run_held_open_ends_when_its_hold_does(state: ClusterState) -> None:
    state.worker_connected(hello("w"), 0)
    state.submit_run("r", "", [fn("a")], 0, open_for=10)
    (a,) = assigns(state)
    finish(state, a, now=1)
    assert state.run("r").state is RunState.RUNNING  # held: more may come
    state.add_jobs("r", [fn("b", ("a",))], 5, open_for=10)  # joins the run, and holds it to 15
    (b,) = assigns(state)
    finish(state, b, now=6)
    state.tick(14.9)
    assert state.run("r").state is RunState.RUNNING
    assert state.next_deadline() == pytest.approx(15.0)
    state.tick(15.0)
    assert state.run("r").state is RunState.SUCCEEDED
    with pytest.raises(InvalidSpec, match="has ended"):
        state.add_jobs("r", [fn("c")], 16, open_for=10)


def test_a_held_run_ends_when_a_job_failed_and_at_once_when_cancelled(state: ClusterState) -> None:
    state.worker_connected(hello("w", slots=2), 0)
    state.submit_run("r", "", [fn("a")], 0, open_for=10)
    (a,) = assigns(state)
    finish(state, a, FAIL, now=1)
    state.tick(10)
    assert state.run("r").state is RunState.FAILED
    state.submit_run("s", "", [fn("a")], 20, open_for=100)
    state.cancel("s", 21)
    assert state.run("s").state is RunState.CANCELLED


def test_a_hold_survives_a_master_restart() -> None:
    store = MemoryStore()
    state = ClusterState()
    state.worker_connected(hello("w"), 0)
    state.submit_run("r", "", [fn("a")], 0, open_for=10)
    (a,) = assigns(state)
    finish(state, a, OK, now=1)
    persist(state, store)
    fresh = restored(store, 2)
    assert fresh.run("r").state is RunState.RUNNING and fresh.run("r").open_until == 10
    fresh.tick(10)
    assert fresh.run("r").state is RunState.SUCCEEDED


@pytest.mark.parametrize("open_for", [-1.0, MAX_OPEN_FOR + 1, float("nan")])
def test_open_for_is_bounded(state: ClusterState, open_for: float) -> None:
    with pytest.raises(InvalidSpec, match="open_for"):
        state.submit_run("r", "", [fn("a")], 0, open_for=open_for)
