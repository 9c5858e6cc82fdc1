"""Dynamic DAGs in the state machine: trigger rules, branches, conditions, map_over, gates, fallbacks, loops."""

from __future__ import annotations

import json

import pytest

from titan_runtime.core.cluster import ClusterConfig, ClusterState
from titan_runtime.core.effects import Assign, AttemptExit, WorkerHello
from titan_runtime.core.expr import ExpressionError, evaluate
from titan_runtime.core.model import ApprovalGate, InvalidSpec, JobSpec, JobState, RetryPolicy, RunState

OK = AttemptExit("succeeded", 0)
FAIL = AttemptExit("failed", 1)


def spec(job_id: str, parents: tuple[str, ...] = (), **kw: object) -> JobSpec:
    return JobSpec(id=job_id, command=("true",), parents=parents, **kw)  # type: ignore[arg-type]


@pytest.fixture
def state() -> ClusterState:
    s = ClusterState(ClusterConfig(lease_timeout=1e9))
    s.worker_connected(WorkerHello(worker_id="w", name="w", slots=8, tags=frozenset({"GENERAL", "cpu"})), 0)
    return s


def run_all(
    state: ClusterState,
    outcomes: dict[str, AttemptExit] | None = None,
    results: dict[str, object] | None = None,
) -> list[str]:
    """Finish every assigned attempt (with the given outcome or success) until nothing is left; the order run."""
    order = []
    for _ in range(100):
        placed = [e for e in state.take_effects() if isinstance(e, Assign)]
        if not placed:
            return order
        for a in placed:
            order.append(a.job_id)
            exit = (outcomes or {}).get(a.job_id, OK)
            if results and a.job_id in results:
                exit = AttemptExit("succeeded", 0, result=json.dumps(results[a.job_id]))
            state.attempt_finished(a.worker_id, a.attempt_id, exit, 1.0)
    raise AssertionError("did not settle")


def states(state: ClusterState, run: str = "r") -> dict[str, str]:
    return {j.id: j.state.value for j in state.run(run).jobs.values()}


@pytest.mark.parametrize(
    ("rule", "left", "expected"),
    [
        ("all_success", FAIL, "UPSTREAM_FAILED"),
        ("all_done", FAIL, "SUCCEEDED"),
        ("one_success", FAIL, "SUCCEEDED"),
        ("none_failed", FAIL, "UPSTREAM_FAILED"),
        ("all_success", OK, "SUCCEEDED"),
    ],
)
def test_trigger_rules(state: ClusterState, rule: str, left: AttemptExit, expected: str) -> None:
    state.submit_run(
        "r", "", [spec("left"), spec("right"), spec("join", ("left", "right"), trigger_rule=rule)], 0
    )
    run_all(state, {"left": left})
    assert states(state)["join"] == expected


def test_branch_skips_the_other_path_and_a_none_failed_join_runs(state: ClusterState) -> None:
    state.submit_run(
        "r",
        "",
        [
            spec("decide", branch=True),
            spec("fast", ("decide",)),
            spec("deep", ("decide",)),
            spec("deep_more", ("deep",)),
            spec("report", ("fast", "deep_more"), trigger_rule="none_failed"),
        ],
        0,
    )
    order = run_all(state, results={"decide": "fast"})
    assert states(state) == {
        "decide": "SUCCEEDED",
        "fast": "SUCCEEDED",
        "deep": "SKIPPED",
        "deep_more": "SKIPPED",
        "report": "SUCCEEDED",
    }
    assert order == ["decide", "fast", "report"]
    assert state.resolve("r/deep").reason == "not chosen by branch decide"
    assert state.resolve("r/deep_more").reason == "upstream job deep was skipped"
    assert state.run("r").state is RunState.SUCCEEDED


def test_a_branch_naming_a_stranger_fails(state: ClusterState) -> None:
    state.submit_run("r", "", [spec("decide", branch=True), spec("a", ("decide",))], 0)
    run_all(state, results={"decide": ["a", "nope"]})
    assert state.resolve("r/decide").reason == "branch: nope is not a child (children: a)"
    assert states(state)["a"] == "UPSTREAM_FAILED"


def test_when_conditions_read_parents_results(state: ClusterState) -> None:
    state.submit_run(
        "r",
        "",
        [
            spec("measure"),
            spec("scale_up", ("measure",), when="measure.load > 0.8"),
            spec("idle", ("measure",), when="results['measure']['load'] < 0.2"),
            spec("broken", ("measure",), when="measure.missing > 1"),
        ],
        0,
    )
    run_all(state, results={"measure": {"load": 0.9}})
    got = states(state)
    assert (got["scale_up"], got["idle"], got["broken"]) == ("SUCCEEDED", "SKIPPED", "FAILED")
    assert "no 'missing'" in state.resolve("r/broken").reason


def test_unsafe_conditions_are_refused_at_submission(state: ClusterState) -> None:
    for bad in ("__import__('os').system('x')", "measure.__class__", "(lambda: 1)()", "open('/etc/passwd')"):
        with pytest.raises(InvalidSpec):
            state.submit_run("r", "", [spec("m"), spec("x", ("m",), when=bad)], 0)
    assert evaluate("len(xs) == 2 and 'a' in xs", {"xs": ["a", "b"]})
    with pytest.raises(ExpressionError):
        evaluate("unknown > 1", {})


def test_map_over_runs_one_job_per_item_and_collects_results_in_order(state: ClusterState) -> None:
    state.submit_run(
        "r",
        "",
        [spec("gen"), spec("square", ("gen",), map_over="gen"), spec("total", ("square",))],
        0,
    )
    placed = [e for e in state.take_effects() if isinstance(e, Assign)]
    state.attempt_finished("w", placed[0].attempt_id, AttemptExit("succeeded", 0, result="[3, 1, 2]"), 1)
    instances = [e for e in state.take_effects() if isinstance(e, Assign)]
    assert [a.job_id for a in instances] == ["square.0", "square.1", "square.2"]
    assert [json.loads(a.spec.env["TITAN_MAP_ITEM"]) for a in instances] == [3, 1, 2]
    for a in reversed(instances):  # finish out of order
        item = json.loads(a.spec.env["TITAN_MAP_ITEM"])
        state.attempt_finished("w", a.attempt_id, AttemptExit("succeeded", 0, result=str(item * item)), 2)
    assert json.loads(state.resolve("r/square").result) == [9, 1, 4]
    assert [a.job_id for a in state.take_effects() if isinstance(a, Assign)] == ["total"]


def test_map_over_an_empty_list_succeeds_and_a_failed_instance_fails(state: ClusterState) -> None:
    state.submit_run("r", "", [spec("gen"), spec("each", ("gen",), map_over="gen")], 0)
    run_all(state, results={"gen": []})
    assert state.resolve("r/each").state is JobState.SUCCEEDED and state.resolve("r/each").result == "[]"
    state.submit_run("s", "", [spec("gen"), spec("each", ("gen",), map_over="gen")], 0)
    run_all(state, outcomes={"each.1": FAIL}, results={"gen": ["a", "b"]})
    assert state.resolve("s/each").reason.startswith("1 of 2 mapped jobs did not succeed (each.1")


def test_approval_gate_approve_reject_and_not_reached(state: ClusterState) -> None:
    gate = ApprovalGate(required=True, message="ship it?", timeout=60)
    state.submit_run(
        "r", "", [spec("pre"), spec("gate", ("pre",), approval=gate), spec("train", ("gate",))], 0
    )
    with pytest.raises(InvalidSpec, match="not reached yet: the job is PENDING"):
        state.decide_gate("r/gate", True, "ann", "", 0.5)
    run_all(state)
    assert states(state)["gate"] == "WAITING_APPROVAL"
    assert state.resolve("r/gate").reason == "ship it?"
    assert [j.ref for j in state.open_gates()] == ["r/gate"]
    state.decide_gate("r/gate", True, "ann", "looks good", 5)
    assert state.resolve("r/gate").decision == {
        "decision": "approved",
        "by": "ann",
        "at": 5,
        "comment": "looks good",
    }
    assert run_all(state) == ["train"]
    with pytest.raises(InvalidSpec, match="already decided: approved"):
        state.decide_gate("r/gate", False, "bob", "", 6)

    state.submit_run("s", "", [spec("gate", approval=gate), spec("train", ("gate",))], 10)
    run_all(state)
    state.decide_gate("s/gate", False, "bob", "data looks off", 11)
    assert state.resolve("s/gate").reason == "rejected by bob: data looks off"
    assert states(state, "s")["train"] == "UPSTREAM_FAILED"


def test_approval_gate_expires(state: ClusterState) -> None:
    state.submit_run("r", "", [spec("gate", approval=ApprovalGate(required=True, timeout=30))], 0)
    placed = [e for e in state.take_effects() if isinstance(e, Assign)]
    state.attempt_finished("w", placed[0].attempt_id, OK, 10)
    state.tick(39.9)
    assert states(state)["gate"] == "WAITING_APPROVAL"
    state.tick(40)
    job = state.resolve("r/gate")
    assert job.state is JobState.FAILED and job.reason == "approval timed out after 30s"


def test_fallback_moves_later_attempts_to_other_hardware_and_never_back() -> None:
    state = ClusterState(ClusterConfig(lease_timeout=1e9))
    for worker, tags in (("gpu1", {"GPU"}), ("gpu2", {"GPU"}), ("cpu", set())):
        state.worker_connected(WorkerHello(worker_id=worker, name=worker, slots=1, tags=frozenset(tags)), 0)
    policy = RetryPolicy(attempts=3, backoff_initial=0, fallback=(frozenset({"GPU"}), frozenset()))
    state.submit_run("r", "", [spec("train", tags=frozenset({"GPU"}), retries=policy)], 0)
    where = []
    for _ in range(3):
        (a,) = [e for e in state.take_effects() if isinstance(e, Assign)]
        where.append(a.worker_id)
        if len(where) < 3:
            state.attempt_finished(a.worker_id, a.attempt_id, FAIL, 1)
    assert where[0].startswith("gpu") and where[1].startswith("gpu") and where[0] != where[1]
    assert where[2] == "cpu"  # the last fallback (GENERAL), and not a GPU worker it failed on


def test_feedback_loop_iterations_rewire_the_join_and_stop_at_the_limit(state: ClusterState) -> None:
    state.submit_run(
        "r",
        "",
        [
            spec("plan"),
            spec("work", ("plan",)),
            spec("evaluate", ("work",)),
            spec("synthesize", ("evaluate",)),
        ],
        0,
    )
    order = []
    for iteration in (2, 3):
        while True:
            placed = [e for e in state.take_effects() if isinstance(e, Assign)]
            (a,) = placed
            order.append(a.job_id)
            if a.job_id.startswith("evaluate"):
                state.add_iteration("r", ["plan", "work", "evaluate"], a.job_id, 3, 1)
                assert state.resolve(f"r/plan@{iteration}").spec.iteration == iteration
                state.attempt_finished("w", a.attempt_id, OK, 1)
                break
            state.attempt_finished("w", a.attempt_id, OK, 1)
    with pytest.raises(InvalidSpec, match="max_iterations=3 reached: iteration 4"):
        state.add_iteration("r", ["plan", "work", "evaluate"], "evaluate@3", 3, 2)
    order += run_all(state)
    assert order == [
        "plan",
        "work",
        "evaluate",
        "plan@2",
        "work@2",
        "evaluate@2",
        "plan@3",
        "work@3",
        "evaluate@3",
        "synthesize",
    ]
    assert state.resolve("r/synthesize").parents == ["evaluate@3"]
    assert state.run("r").state is RunState.SUCCEEDED


def test_jobs_added_to_a_run_obey_static_rules(state: ClusterState) -> None:
    state.submit_run("r", "", [spec("a")], 0)
    with pytest.raises(InvalidSpec, match="dependency cycle"):
        state.add_jobs("r", [spec("x", ("y",)), spec("y", ("x",))], 1)
    with pytest.raises(InvalidSpec, match="depends on unknown job 'nope'"):
        state.add_jobs("r", [spec("x", ("nope",))], 1)
    state.add_jobs("r", [spec("b", ("a",))], 1)
    assert run_all(state) == ["a", "b"]
    with pytest.raises(InvalidSpec, match="has ended"):
        state.add_jobs("r", [spec("late")], 2)
