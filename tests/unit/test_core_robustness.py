"""The state machine against hostile or damaged input: deep chains, huge conditions, lying workers,
records that cannot be read. None of it may raise out of an event; each failure fails one job."""

from __future__ import annotations

import json
import sys
import time

import pytest

from titan_runtime.core.cluster import ClusterConfig, ClusterState
from titan_runtime.core.effects import Assign, AttemptExit, WorkerHello
from titan_runtime.core.expr import Budget, ExpressionError, check, evaluate
from titan_runtime.core.limits import Limits
from titan_runtime.core.model import ApprovalGate, InvalidSpec, JobSpec, JobState, RunState
from titan_runtime.store import MemoryStore

OK = AttemptExit("succeeded", 0)
FAIL = AttemptExit("failed", 1)


def spec(job_id: str, parents: tuple[str, ...] = (), **kw: object) -> JobSpec:
    return JobSpec(id=job_id, command=("true",), parents=parents, **kw)  # type: ignore[arg-type]


def cluster(**config: object) -> ClusterState:
    state = ClusterState(ClusterConfig(lease_timeout=1e9, **config))  # type: ignore[arg-type]
    state.worker_connected(WorkerHello(worker_id="w", name="w", slots=8), 0)
    return state


def assigns(state: ClusterState) -> list[Assign]:
    return [e for e in state.take_effects() if isinstance(e, Assign)]


def chain(n: int) -> list[JobSpec]:
    return [spec("j0")] + [spec(f"j{i}", (f"j{i - 1}",)) for i in range(1, n)]


# ---------------------------------------------------------------- deep chains


def test_a_failure_settles_a_chain_far_deeper_than_the_recursion_limit() -> None:
    n = 20 * sys.getrecursionlimit()
    state = cluster()
    state.submit_run("r", "", chain(n), 0)
    (root,) = assigns(state)
    state.attempt_finished("w", root.attempt_id, FAIL, 1)
    run = state.run("r")
    assert run.state is RunState.FAILED and run.reason.startswith("job j0 failed")
    last = run.jobs[f"j{n - 1}"]
    assert last.state is JobState.UPSTREAM_FAILED and last.reason == "upstream job j0 failed"


def test_a_chain_failed_only_in_the_store_settles_on_restart() -> None:
    """The master died after committing the root's failure, before its descendants': restore settles them."""
    n = 20 * sys.getrecursionlimit()
    state = cluster()
    state.submit_run("r", "", chain(n), 0)
    assigns(state)
    store = MemoryStore()
    store.save(state.take_changes())
    snap = store.load()
    for row in snap.jobs:
        if row["job_id"] == "j0":
            row.update(state="FAILED", reason="exit code 1", ended_at=1.0)
    for row in snap.attempts:
        row.update(state="FAILED", ended_at=1.0)
    fresh = ClusterState()
    fresh.restore(snap.runs, snap.jobs, snap.attempts, snap.workers, 2)
    assert fresh.run("r").state is RunState.FAILED
    assert fresh.resolve(f"r/j{n - 1}").state is JobState.UPSTREAM_FAILED


def test_cancel_reaches_the_end_of_a_deep_chain() -> None:
    n = 5 * sys.getrecursionlimit()
    state = cluster()
    state.submit_run("r", "", chain(n), 0)
    cancelled = state.cancel("r/j0", 1)
    assert len(cancelled) == n
    assert state.run("r").state is RunState.CANCELLED


# ---------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    "expression",
    [
        '"a" * 100000000000000000000',
        "[[1] * 1000] * 1000",
        "'x' * 600000 + 'y' * 600000",
        "not " * 100 + "true",
        "10 ** 9",
        "'%*d' % (100, 1)",
        "1 / 0",
        "2 * 3 if true else [0] * 10000000",
    ],
)
def test_conditions_that_cannot_end_well_are_refused_at_submission(expression: str) -> None:
    with pytest.raises(ExpressionError):
        check(expression)
    state = cluster()
    with pytest.raises(InvalidSpec, match="when"):
        state.submit_run("r", "", [spec("p"), spec("c", ("p",), when=expression)], 0)


@pytest.mark.parametrize(
    ("expression", "result", "why"),
    [
        ("p * 10**3 != ''", "x", "Pow"),
        ("p.text * p.n", {"text": "ab", "n": 10**12}, "condition budget"),
        ("p.n * p.n * p.n > 0", {"n": 2**600}, "integer wider than 1024 bits"),
        ("str([p, p, p]) != ''", "a" * 400_000, "condition budget"),
        ("sum(p) > 0", list(range(120_000)), "steps"),
        ("p.n / 3 > 1", {"n": 10**400}, "OverflowError"),
        ("p['missing']", {}, "no 'missing'"),
        ("p + 1", "text", "TypeError"),
    ],
)
def test_conditions_over_budget_on_real_results_fail_their_job_only(
    expression: str, result: object, why: str
) -> None:
    state = cluster()
    try:
        check(expression)
    except ExpressionError as exc:  # refused at submission already: fine, and it says why
        assert why in str(exc)
        return
    state.submit_run("r", "", [spec("p"), spec("c", ("p",), when=expression), spec("other")], 0)
    placed = {a.job_id: a for a in assigns(state)}
    started = time.perf_counter()
    state.attempt_finished(
        "w", placed["p"].attempt_id, AttemptExit("succeeded", 0, result=json.dumps(result)), 1
    )
    assert time.perf_counter() - started < 5
    job = state.resolve("r/c")
    assert job.state is JobState.FAILED and why in job.reason, job.reason
    assert state.resolve("r/other").state is JobState.ASSIGNED  # the rest of the cluster goes on


def test_budgeted_conditions_still_read_results() -> None:
    names = {"scan": {"found": True, "items": [1, 2, 3]}, "results": {}}
    assert evaluate('scan.found and len(scan["items"]) < 10 and sum(scan.items) == 6', names)
    assert evaluate("'ab' * 3 == 'ababab' and [1] * 2 == [1, 1] and str(12) + 'x' == '12x'", {})
    assert evaluate("max([1, 5, 2]) == 5 and -(-3) == 3", {}, Budget(max_steps=100))


def test_a_condition_child_of_an_expiring_gate_fails_alone() -> None:
    """The issue's case: the gate times out in a tick; its child's condition is evaluated there."""
    state = cluster()
    state.submit_run(
        "r",
        "",
        [
            spec("gate", approval=ApprovalGate(required=True, timeout=5)),
            spec("after", ("gate",), trigger_rule="all_done", when="gate * 100000 * 100000 != 0"),
        ],
        0,
    )
    (gate,) = assigns(state)
    state.attempt_finished("w", gate.attempt_id, AttemptExit("succeeded", 0, result='"xx"'), 1)
    state.tick(10)
    assert state.resolve("r/gate").state is JobState.FAILED
    after = state.resolve("r/after")
    assert after.state is JobState.FAILED and "condition budget" in after.reason
    assert state.run("r").state is RunState.FAILED


# ---------------------------------------------------------------- what workers report


@pytest.mark.parametrize(
    ("result", "why"),
    [("{not json", "not valid JSON"), ("[" * 100_000 + "]" * 100_000, "not valid JSON")],
)
def test_a_result_that_is_not_json_fails_the_attempt(result: str, why: str) -> None:
    state = cluster()
    state.submit_run("r", "", [spec("p", branch=True), spec("c", ("p",))], 0)
    (p,) = assigns(state)
    state.attempt_finished("w", p.attempt_id, AttemptExit("succeeded", 0, result=result), 1)
    job = state.resolve("r/p")
    assert job.state is JobState.FAILED and why in job.reason


def test_a_result_over_the_limit_fails_the_attempt() -> None:
    state = cluster()
    state.submit_run("r", "", [spec("p")], 0)
    (p,) = assigns(state)
    big = json.dumps("x" * (1024 * 1024 + 1))
    state.attempt_finished("w", p.attempt_id, AttemptExit("succeeded", 0, result=big), 1)
    assert "1 MB limit" in state.resolve("r/p").reason


# ---------------------------------------------------------------- limits


def test_jobs_per_run_is_a_limit_with_a_way_to_raise_it() -> None:
    state = cluster(limits=Limits(jobs_per_run=10))
    with pytest.raises(InvalidSpec, match=r"11 jobs, over the master's limit jobs_per_run=10; raise it with"):
        state.submit_run("r", "", chain(11), 0)
    state.submit_run("r", "", chain(10), 0)
    with pytest.raises(InvalidSpec, match="jobs_per_run"):
        state.add_jobs("r", [spec("more")], 1)


def test_a_map_beyond_the_job_limit_fails_its_job() -> None:
    state = cluster(limits=Limits(jobs_per_run=10))
    state.submit_run("r", "", [spec("items"), spec("each", ("items",), map_over="items")], 0)
    (items,) = assigns(state)
    state.attempt_finished(
        "w", items.attempt_id, AttemptExit("succeeded", 0, result=json.dumps(list(range(50)))), 1
    )
    each = state.resolve("r/each")
    assert each.state is JobState.FAILED and "jobs_per_run=10" in each.reason
    assert len(state.run("r").jobs) == 2


def test_env_and_condition_sizes_are_limits() -> None:
    state = cluster(limits=Limits(env_bytes=100, expression_length=20))
    with pytest.raises(InvalidSpec, match="env_bytes=100"):
        state.submit_run("r", "", [spec("a", env={"K": "v" * 200})], 0)
    with pytest.raises(InvalidSpec, match="expression_length=20"):
        state.submit_run("r", "", [spec("p"), spec("c", ("p",), when="p == 'a long condition text'")], 0)


# ---------------------------------------------------------------- damaged records


def test_records_that_cannot_be_read_fail_their_job_and_the_rest_restores() -> None:
    state = cluster()
    state.submit_run("r", "", [spec("a"), spec("b", ("a",)), spec("c")], 0)
    assigns(state)
    store = MemoryStore()
    store.save(state.take_changes())
    snap = store.load()
    for row in snap.jobs:
        if row["job_id"] == "a":
            row["spec"] = {"id": "a", "retries": {"no_such_field": 1}, "command": ["true"]}
    snap.jobs.append({"run_id": "gone", "job_id": "x", "spec": {"id": "x"}, "state": "PENDING"})
    snap.attempts.append({"garbage": True})
    snap.workers.append({"id": "broken"})
    fresh = ClusterState()
    fresh.restore(snap.runs, snap.jobs, snap.attempts, snap.workers, 5)
    a = fresh.resolve("r/a")
    assert a.state is JobState.FAILED and "could not be read" in a.reason
    assert fresh.resolve("r/b").state is JobState.UPSTREAM_FAILED
    assert fresh.resolve("r/c").state is JobState.ASSIGNED
    notes = [e for e in fresh.take_effects() if type(e).__name__ == "Note"]
    assert sum("cannot be read" in n.message for n in notes) >= 3
    assert any(row["job_id"] == "a" and row["state"] == "FAILED" for row in fresh.take_changes().jobs)


# ---------------------------------------------------------------- the master's guard


def test_an_unexpected_error_fails_its_request_with_a_reference_the_log_repeats(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import grpc

    from titan_runtime.master.guard import bounded, status_of
    from titan_runtime.master.loop import StoreFailed

    code, message = status_of(ZeroDivisionError("boom"), "/titan.v1.Titan/SubmitRun")
    reference = message.split("reference ")[1].split(")")[0]
    assert code is grpc.StatusCode.INTERNAL and len(reference) == 8
    assert any(reference in r.getMessage() and r.exc_info for r in caplog.records)
    assert status_of(InvalidSpec("bad"), "/m") == (grpc.StatusCode.INVALID_ARGUMENT, "bad")
    assert status_of(StoreFailed("gone"), "/m")[0] is grpc.StatusCode.UNAVAILABLE
    long = "é" * 5000
    assert len(bounded(long).encode()) < 1100 and bounded(long).endswith("(10,000 bytes in all)")
    assert bounded("short") == "short"


def test_preload_takes_a_few_module_names_and_survives_the_store_and_the_wire() -> None:
    from titan_runtime.master.convert import spec_from_pb, spec_to_pb

    spec = JobSpec("step", command=("{python}", "-m", "dagster"), preload=("dagster", "titan_dagster"))
    spec.validate()
    assert JobSpec.from_dict(spec.to_dict()).preload == spec_from_pb(spec_to_pb(spec)).preload == spec.preload
    for wrong in (("not a module",), ("os;rm",), ("a..b",), tuple(f"m{i}" for i in range(17))):
        with pytest.raises(InvalidSpec, match="preload takes at most 16 module names"):
            JobSpec("step", command=("true",), preload=wrong).validate()
