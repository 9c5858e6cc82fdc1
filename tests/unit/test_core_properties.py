"""Properties of the state machine under arbitrary DAGs, completion orders and worker failures."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from titan_runtime.core.cluster import ClusterConfig, ClusterState
from titan_runtime.core.effects import Assign, AttemptExit, WorkerHello
from titan_runtime.core.model import TRIGGER_RULES, Job, JobSpec, JobState, RetryPolicy, RunState

BAD = (JobState.FAILED, JobState.UPSTREAM_FAILED, JobState.CANCELLED)


def rule_holds(state: ClusterState, job: Job) -> bool:
    """The job's trigger rule is met by its parents' states right now."""
    parents = [state.resolve(f"r/{p}") for p in job.parents]
    rule = job.spec.trigger_rule
    if rule == "all_success":
        return all(p.state is JobState.SUCCEEDED for p in parents)
    if rule == "all_done":
        return all(p.state.terminal for p in parents)
    if rule == "one_success":
        return not parents or any(p.state is JobState.SUCCEEDED for p in parents)
    return all(p.state.terminal and p.state not in BAD for p in parents)


@st.composite
def dags(draw: st.DrawFn) -> list[JobSpec]:
    n = draw(st.integers(1, 10))
    specs = []
    for i in range(n):
        parents = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        retries = RetryPolicy(
            attempts=draw(st.integers(1, 3)), backoff_initial=0.0, max_lost=draw(st.integers(0, 2))
        )
        specs.append(
            JobSpec(
                id=f"j{i}",
                command=("true",),
                parents=tuple(f"j{p}" for p in sorted(parents)),
                retries=retries,
                trigger_rule=draw(st.sampled_from(TRIGGER_RULES)),
            )
        )
    return specs


ACTIONS = st.lists(
    st.tuples(st.sampled_from(["ok", "ok", "ok", "fail", "lose", "reconnect"]), st.integers(0, 1000)),
    min_size=1,
    max_size=80,
)


def check_invariants(state: ClusterState) -> None:
    for worker in state.workers.values():
        live = [a for a in worker.attempts]
        used = sum(state.attempt(a)[0].spec.slots for a in live)  # type: ignore[index]
        assert worker.used_slots == used
        assert worker.used_slots <= worker.slots
    for run in state.runs.values():
        for job in run.jobs.values():
            assert sum(1 for a in job.attempts if a.state.value == "SUCCEEDED") <= 1
            assert sum(1 for a in job.attempts if not a.state.terminal) <= 1
            if job.state in (JobState.ASSIGNED, JobState.RUNNING, JobState.SUCCEEDED):
                assert job.attempts, "a job ran without an attempt"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=dags(), actions=ACTIONS, n_workers=st.integers(1, 3))
def test_any_order_of_events_keeps_the_guarantees(
    specs: list[JobSpec], actions: list[tuple[str, int]], n_workers: int
) -> None:
    state = ClusterState(ClusterConfig(lease_timeout=1e9))  # loss is driven explicitly
    now = 0.0
    for w in range(n_workers):
        state.worker_connected(WorkerHello(worker_id=f"w{w}", name=f"w{w}", slots=2), now)
    state.submit_run("r", "", specs, now)
    running: list[Assign] = []
    assigned_parents_ok = True

    def collect() -> None:
        nonlocal assigned_parents_ok
        for effect in state.take_effects():
            if isinstance(effect, Assign):
                assigned_parents_ok &= rule_holds(state, state.resolve(f"r/{effect.job_id}"))
                running.append(effect)

    collect()
    generation = n_workers
    for action, pick in actions:
        now += 1.0
        if action == "reconnect":
            state.worker_connected(
                WorkerHello(worker_id=f"w{generation}", name=f"w{generation}", slots=2), now
            )
            generation += 1
        elif running:
            a = running.pop(pick % len(running))
            if action == "ok":
                state.attempt_finished(a.worker_id, a.attempt_id, AttemptExit("succeeded", 0), now)
            elif action == "fail":
                state.attempt_finished(a.worker_id, a.attempt_id, AttemptExit("failed", 1), now)
            else:
                running[:] = [r for r in running if r.worker_id != a.worker_id]
                state.worker_disconnected(a.worker_id, now, "disconnected")
        state.tick(now)
        collect()
        check_invariants(state)
        assert assigned_parents_ok
        if not any(state.workers[w].state.value == "ALIVE" for w in state.workers):
            state.worker_connected(
                WorkerHello(worker_id=f"w{generation}", name=f"w{generation}", slots=2), now
            )
            generation += 1
            collect()
    # Drain: finish everything still running successfully.
    for _ in range(200):
        if not running:
            break
        a = running.pop(0)
        now += 1
        state.attempt_finished(a.worker_id, a.attempt_id, AttemptExit("succeeded", 0), now)
        state.tick(now)
        collect()
        check_invariants(state)
    run = state.run("r")
    assert all(j.state.terminal for j in run.jobs.values())
    assert run.state is not RunState.RUNNING
    assert (run.state is RunState.SUCCEEDED) == all(j.state not in BAD for j in run.jobs.values())
    for job in run.jobs.values():  # a job that never ran was rightly never run
        if not job.attempts:
            assert job.state in (JobState.SKIPPED, JobState.UPSTREAM_FAILED) and not rule_holds(state, job)


@settings(max_examples=200, deadline=None)
@given(n_parents=st.integers(2, 8), order=st.randoms())
def test_fan_in_child_is_queued_exactly_once_when_parents_finish_together(n_parents: int, order) -> None:  # type: ignore[no-untyped-def]
    state = ClusterState()
    state.worker_connected(WorkerHello(worker_id="w", name="w", slots=n_parents + 1), 0)
    parents = [JobSpec(id=f"p{i}", command=("true",)) for i in range(n_parents)]
    child = JobSpec(id="child", command=("true",), parents=tuple(p.id for p in parents))
    state.submit_run("r", "", [*parents, child], 0)
    placed = [e for e in state.take_effects() if isinstance(e, Assign)]
    order.shuffle(placed)
    for a in placed:  # every report at the same instant
        state.attempt_finished(a.worker_id, a.attempt_id, AttemptExit("succeeded", 0), 5.0)
    children = [e for e in state.take_effects() if isinstance(e, Assign) and e.job_id == "child"]
    assert len(children) == 1
    state.tick(5.0)
    assert not [e for e in state.take_effects() if isinstance(e, Assign)]
