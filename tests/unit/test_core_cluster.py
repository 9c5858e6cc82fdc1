"""The control plane's decisions, without processes: events in, effects out."""

from __future__ import annotations

import pytest

from titan_runtime.core.cluster import ClusterConfig, ClusterState, NotFound
from titan_runtime.core.effects import (
    AckFinished,
    Assign,
    AttemptExit,
    CancelAttempt,
    DisconnectWorker,
    HeldAttempt,
    WorkerHello,
)
from titan_runtime.core.model import (
    AttemptState,
    InvalidSpec,
    JobSpec,
    JobState,
    RetryPolicy,
    RunState,
    WorkerState,
)
from titan_runtime.store import MemoryStore

OK = AttemptExit("succeeded", 0)
FAIL = AttemptExit("failed", 1)


def spec(job_id: str, parents: tuple[str, ...] = (), **kw: object) -> JobSpec:
    return JobSpec(id=job_id, command=("true",), parents=parents, **kw)  # type: ignore[arg-type]


def hello(
    worker_id: str, tags: tuple[str, ...] = (), slots: int = 1, held: tuple[HeldAttempt, ...] = ()
) -> WorkerHello:
    return WorkerHello(worker_id=worker_id, name=worker_id, tags=frozenset(tags), slots=slots, held=held)


def assigns(state: ClusterState) -> list[Assign]:
    return [e for e in state.take_effects() if isinstance(e, Assign)]


def finish(state: ClusterState, a: Assign, exit: AttemptExit = OK, now: float = 1.0) -> None:
    state.attempt_finished(a.worker_id, a.attempt_id, exit, now)


def job_state(state: ClusterState, ref: str) -> JobState:
    return state.resolve(ref).state


@pytest.fixture
def state() -> ClusterState:
    """Leases long enough never to expire unless a test is about them."""
    return ClusterState(ClusterConfig(lease_timeout=1e6))


LEASED = ClusterConfig(lease_timeout=10.0)


def test_diamond_runs_in_dependency_order(state: ClusterState) -> None:
    state.worker_connected(hello("w", slots=4), 0)
    state.submit_run(
        "r",
        "diamond",
        [spec("root"), spec("left", ("root",)), spec("right", ("root",)), spec("sink", ("left", "right"))],
        0,
    )
    first = assigns(state)
    assert [a.job_id for a in first] == ["root"]
    finish(state, first[0])
    second = assigns(state)
    assert sorted(a.job_id for a in second) == ["left", "right"]
    finish(state, second[0])
    assert assigns(state) == []  # sink waits for both parents
    finish(state, second[1])
    third = assigns(state)
    assert [a.job_id for a in third] == ["sink"]
    finish(state, third[0])
    assert state.run("r").state is RunState.SUCCEEDED


def test_failure_marks_descendants_upstream_failed_and_they_never_run(state: ClusterState) -> None:
    state.worker_connected(hello("w", slots=4), 0)
    state.submit_run("r", "", [spec("a"), spec("b", ("a",)), spec("c", ("b",)), spec("other")], 0)
    first = {a.job_id: a for a in assigns(state)}
    finish(state, first["a"], FAIL)
    assert job_state(state, "r/b") is JobState.UPSTREAM_FAILED
    assert job_state(state, "r/c") is JobState.UPSTREAM_FAILED
    assert state.resolve("r/c").reason == "upstream job a failed"
    assert state.run("r").state is RunState.RUNNING  # "other" still runs
    finish(state, first["other"])
    assert assigns(state) == []
    run = state.run("r")
    assert run.state is RunState.FAILED
    assert run.reason == "job a failed: exit code 1"


def test_retry_waits_for_its_backoff_and_avoids_the_failed_worker(state: ClusterState) -> None:
    state.worker_connected(hello("w1"), 0)
    state.worker_connected(hello("w2"), 0)
    policy = RetryPolicy(attempts=3, backoff_initial=2.0, backoff_factor=3.0)
    state.submit_run("r", "", [spec("flaky", retries=policy)], 0)
    (first,) = assigns(state)
    finish(state, first, FAIL, now=10)
    job = state.resolve("r/flaky")
    assert job.state is JobState.PENDING
    assert job.reason == "attempt 1 failed (exit code 1); retrying in 2s"
    state.tick(11.9)
    assert assigns(state) == []
    assert state.next_deadline() == pytest.approx(12.0)
    state.tick(12.0)
    (second,) = assigns(state)
    assert second.number == 2
    assert second.worker_id != first.worker_id
    finish(state, second, FAIL, now=20)
    assert state.resolve("r/flaky").not_before == pytest.approx(26.0)  # 2 * 3
    state.tick(26)
    (third,) = assigns(state)
    finish(state, third, FAIL, now=30)
    job = state.resolve("r/flaky")
    assert job.state is JobState.FAILED
    assert job.reason == "exit code 1 after 3 attempts"
    assert [a.number for a in job.attempts] == [1, 2, 3]


def test_delay_counts_from_when_the_job_becomes_ready(state: ClusterState) -> None:
    state.worker_connected(hello("w", slots=2), 0)
    state.submit_run("r", "", [spec("a"), spec("b", ("a",), delay=5.0)], 0)
    (a,) = assigns(state)
    finish(state, a, now=100)
    assert state.resolve("r/b").state is JobState.PENDING
    state.tick(104.9)
    assert assigns(state) == []
    state.tick(105.0)
    assert [x.job_id for x in assigns(state)] == ["b"]
    assert state.resolve("r/b").ready_at == 105.0


def test_unroutable_job_never_blocks_runnable_ones(state: ClusterState) -> None:
    state.worker_connected(hello("cpu", slots=1), 0)
    state.submit_run("g", "", [spec("train", tags=frozenset({"GPU"}), priority=100)], 0)
    state.submit_run("p", "", [spec("plain")], 0)
    assert [a.job_id for a in assigns(state)] == ["plain"]
    job = state.resolve("g/train")
    assert job.state is JobState.READY
    assert state.waiting_reason(job) == "waiting for a worker with tags {GPU}"
    state.worker_connected(hello("gpu", tags=("GPU", "ssd")), 1)
    (a,) = assigns(state)
    assert (a.job_id, a.worker_id) == ("train", "gpu")


def test_priority_then_arrival_on_one_slot(state: ClusterState) -> None:
    for name, prio in [("low", 1), ("high", 10), ("mid", 5), ("high2", 10)]:
        state.submit_run(name, "", [spec(name, priority=prio)], 0)
    state.worker_connected(hello("w", slots=1), 0)
    order = []
    for _ in range(4):
        (a,) = assigns(state)
        order.append(a.job_id)
        finish(state, a)
    assert order == ["high", "high2", "mid", "low"]


def test_highest_priority_across_requirements_wins_the_shared_slot(state: ClusterState) -> None:
    state.submit_run("a", "", [spec("a1", priority=1), spec("a2", priority=1)], 0)
    state.submit_run("b", "", [spec("b1", tags=frozenset({"x"}), priority=5)], 0)
    state.worker_connected(hello("w", tags=("x",), slots=2), 0)
    assert sorted(a.job_id for a in assigns(state)) == ["a1", "b1"]


def test_least_loaded_worker_is_chosen(state: ClusterState) -> None:
    state.worker_connected(hello("w1", slots=4), 0)
    state.worker_connected(hello("w2", slots=4), 0)
    state.submit_run("r", "", [spec(f"j{i}") for i in range(4)], 0)
    placed = [a.worker_id for a in assigns(state)]
    assert placed.count("w1") == 2 and placed.count("w2") == 2


def test_cancel_run_cancels_everything_and_late_reports_do_not_revive(state: ClusterState) -> None:
    state.worker_connected(hello("w", slots=1), 0)
    state.submit_run("r", "", [spec("a"), spec("b", ("a",)), spec("c")], 0)
    (a,) = assigns(state)
    cancelled = state.cancel("r", 1)
    assert sorted(cancelled) == ["r/a", "r/b", "r/c"]
    effects = state.take_effects()
    assert CancelAttempt("w", a.attempt_id, "cancelled by user") in effects
    assert state.run("r").state is RunState.CANCELLED
    # The slot stays taken until the process is gone.
    assert state.workers["w"].used_slots == 1
    finish(state, a, AttemptExit("cancelled", None, "SIGTERM"), now=2)
    job = state.resolve("r/a")
    assert job.state is JobState.CANCELLED
    assert job.attempts[0].state.value == "CANCELLED"
    assert state.workers["w"].used_slots == 0
    assert assigns(state) == []


def test_reports_from_the_wrong_worker_or_a_lost_attempt_are_rejected(state: ClusterState) -> None:
    state.worker_connected(hello("w1"), 0)
    state.worker_connected(hello("w2"), 0)
    state.submit_run("r", "", [spec("a")], 0)
    (a,) = assigns(state)
    other = "w2" if a.worker_id == "w1" else "w1"
    state.attempt_finished(other, a.attempt_id, OK, 1)
    assert state.resolve("r/a").state is JobState.ASSIGNED
    state.worker_disconnected(a.worker_id, 2, "disconnected")
    (retry,) = assigns(state)
    assert retry.worker_id == other and retry.number == 2
    # The lost attempt's late success never commits.
    state.attempt_finished(a.worker_id, a.attempt_id, OK, 3)
    job = state.resolve("r/a")
    assert job.state is JobState.ASSIGNED
    assert job.attempts[0].state.value == "LOST"
    assert any("rejected late result" in getattr(e, "message", "") for e in state.take_effects())
    finish(state, retry, now=4)
    assert state.resolve("r/a").state is JobState.SUCCEEDED


def test_lost_attempts_are_counted_apart_and_bounded_by_max_lost(state: ClusterState) -> None:
    state.submit_run("r", "", [spec("a", retries=RetryPolicy(attempts=1, max_lost=1))], 0)
    state.worker_connected(hello("w1"), 0)
    (_first,) = assigns(state)
    state.worker_disconnected("w1", 1, "disconnected")
    job = state.resolve("r/a")
    assert (job.state, job.failures, job.lost) == (JobState.READY, 0, 1)
    assert job.reason == "attempt 1 lost (worker w1 disconnected); retrying"
    state.worker_connected(hello("w2"), 2)
    (_second,) = assigns(state)
    state.worker_disconnected("w2", 3, "disconnected")
    job = state.resolve("r/a")
    assert job.state is JobState.FAILED
    assert job.reason.startswith("lost 2 times (limit retries.max_lost=1)")


def test_silent_worker_is_declared_dead_after_its_lease() -> None:
    state = ClusterState(LEASED)
    state.worker_connected(hello("w1"), 0)
    state.worker_connected(hello("w2"), 0)
    state.submit_run("r", "", [spec("a")], 0)
    (a,) = assigns(state)
    other = "w2" if a.worker_id == "w1" else "w1"
    state.heartbeat(other, 9.0)
    state.tick(9.99)
    assert state.workers[a.worker_id].state is WorkerState.ALIVE
    state.tick(10.0)
    effects = state.take_effects()
    assert DisconnectWorker(a.worker_id, "sent no heartbeat for 10s") in effects
    assert state.workers[a.worker_id].state is WorkerState.DEAD
    retry = [e for e in effects if isinstance(e, Assign)]
    assert [(r.job_id, r.worker_id, r.number) for r in retry] == [("a", other, 2)]


def test_idempotent_submission(state: ClusterState) -> None:
    run, existed = state.submit_run("fixed", "", [spec("a")], 0)
    again, existed_again = state.submit_run("fixed", "", [spec("a")], 1)
    assert (existed, existed_again) == (False, True)
    assert again is run
    with pytest.raises(InvalidSpec, match="already exists with other jobs"):
        state.submit_run("fixed", "", [spec("b")], 2)


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (
            [spec("a", ("c",)), spec("b", ("a",)), spec("c", ("b",))],
            r"dependency cycle: (\w) -> (\w) -> (\w) -> \1",
        ),
        ([spec("a", ("nope",))], "job 'a' depends on unknown job 'nope'"),
        ([spec("a"), spec("a")], "duplicate job id 'a'"),
        ([spec("a", tags=frozenset({"bad tag"}))], "invalid tag 'bad tag'"),
        ([spec("a/b")], "invalid job id 'a/b'"),
        ([JobSpec(id="x")], "nothing to run"),
        ([spec("a", ("a",))], "cannot depend on itself"),
        ([], "at least one job"),
    ],
)
def test_invalid_runs_are_refused_whole(state: ClusterState, specs: list[JobSpec], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        state.submit_run("r", "", specs, 0)
    assert "r" not in state.runs
    assert not state.take_changes()


def test_hard_affinity_follows_the_parent_and_fails_when_its_worker_is_gone(state: ClusterState) -> None:
    state.worker_connected(hello("w1", slots=2), 0)
    state.worker_connected(hello("w2", slots=2), 0)
    state.submit_run(
        "r", "", [spec("p"), spec("c", ("p",), affinity="hard"), spec("d", ("p",), affinity="hard")], 0
    )
    (p,) = assigns(state)
    finish(state, p)
    children = assigns(state)
    assert {a.worker_id for a in children} == {p.worker_id}
    # Now a pinned job whose worker died before it could run.
    state.submit_run("s", "", [spec("p"), spec("c", ("p",), affinity="hard")], 2)
    (sp,) = assigns(state)
    finish(state, sp)
    pinned = assigns(state)
    if not pinned:  # the parent's worker was full: the child waits for it, then fails when it dies
        state.worker_disconnected(sp.worker_id, 3, "disconnected")
        job = state.resolve("s/c")
        assert job.state is JobState.FAILED
        assert "affinity" in job.reason


def test_soft_affinity_prefers_the_parents_worker(state: ClusterState) -> None:
    state.worker_connected(hello("w1", slots=3), 0)
    state.worker_connected(hello("w2", slots=3), 0)
    state.submit_run(
        "r", "", [spec("p"), spec("a", ("p",), affinity="soft"), spec("b", ("p",), affinity="soft")], 0
    )
    (p,) = assigns(state)
    finish(state, p)
    assert {a.worker_id for a in assigns(state)} == {p.worker_id}


def test_references_resolve_runs_and_bare_ids(state: ClusterState) -> None:
    state.submit_run("r1", "", [spec("build")], 0)
    state.submit_run("r2", "", [spec("build"), spec("test", ("build",))], 1)
    assert state.resolve("r1").ref == "r1/build"
    assert state.resolve("r2/test").ref == "r2/test"
    assert state.resolve("build").ref == "r2/build"  # the latest run with that job id
    with pytest.raises(NotFound, match="r2 is a run of 2 jobs"):
        state.resolve("r2")
    with pytest.raises(NotFound, match="no job 'nope'"):
        state.resolve("nope")
    with pytest.raises(NotFound, match="run r1 has no job 'x'"):
        state.resolve("r1/x")


def test_jobs_added_to_a_running_run_follow_finished_parents(state: ClusterState) -> None:
    state.worker_connected(hello("w", slots=2), 0)
    state.submit_run("r", "", [spec("a"), spec("b")], 0)
    first = {a.job_id: a for a in assigns(state)}
    finish(state, first["a"])
    state.add_jobs("r", [spec("c", ("a",)), spec("d", ("c", "b"))], 1)
    assert [a.job_id for a in assigns(state)] == ["c"]
    with pytest.raises(InvalidSpec, match="duplicate job id 'a'"):
        state.add_jobs("r", [spec("a")], 2)


def persist(state: ClusterState, store: MemoryStore) -> None:
    store.save(state.take_changes())


def restored(store: MemoryStore, now: float) -> ClusterState:
    snap = store.load()
    fresh = ClusterState(LEASED)
    fresh.restore(snap.runs, snap.jobs, snap.attempts, snap.workers, now)
    return fresh


def test_master_restart_adopts_running_accepts_missed_and_requeues_unstarted() -> None:
    store = MemoryStore()
    state = ClusterState()
    state.worker_connected(hello("w", slots=3), 0)
    state.submit_run("r", "", [spec("run"), spec("done"), spec("unstarted"), spec("child", ("done",))], 0)
    placed = {a.job_id: a for a in assigns(state)}
    state.attempt_started("w", placed["run"].attempt_id, 111, 1, 1)
    state.attempt_started("w", placed["done"].attempt_id, 112, 1, 1)
    persist(state, store)

    # The master dies; meanwhile "done" finished on the worker. A new master comes up.
    fresh = restored(store, 100)
    assert fresh.workers["w"].state is WorkerState.UNKNOWN
    assert assigns(fresh) == []
    welcome = fresh.worker_connected(
        hello(
            "w",
            slots=3,
            held=(
                HeldAttempt(placed["run"].attempt_id, pid=111, started_at=1),
                HeldAttempt(placed["done"].attempt_id, pid=112, started_at=1, exit=OK),
            ),
        ),
        101,
    )
    assert welcome.superseded == ()
    effects = fresh.take_effects()
    assert AckFinished("w", placed["done"].attempt_id) in effects
    new = [e for e in effects if isinstance(e, Assign)]
    # "unstarted" is requeued (not counted as lost, and its never-started attempt not counted at all:
    # it is attempt 1 again), "child" starts now that "done" committed.
    assert sorted((a.job_id, a.number) for a in new) == [("child", 1), ("unstarted", 1)]
    assert fresh.resolve("r/run").state is JobState.RUNNING
    assert fresh.resolve("r/done").state is JobState.SUCCEEDED
    unstarted = fresh.resolve("r/unstarted")
    assert unstarted.lost == 0 and [a.number for a in unstarted.attempts] == [1]
    # A late report of the void attempt is still rejected.
    void = placed["unstarted"].attempt_id
    fresh.attempt_finished("w", void, OK, 102)
    assert unstarted.state is JobState.ASSIGNED
    # And it stays out of the job's attempts across another restart.
    persist(fresh, store)
    again = restored(store, 103)
    assert [a.number for a in again.resolve("r/unstarted").attempts] == [1]
    assert again.attempt(void) is not None


def test_worker_that_never_returns_after_restart_loses_its_attempts() -> None:
    store = MemoryStore()
    state = ClusterState(LEASED)
    state.worker_connected(hello("gone"), 0)
    state.submit_run("r", "", [spec("a")], 0)
    assigns(state)
    persist(state, store)
    fresh = restored(store, 50)
    fresh.worker_connected(hello("new"), 51)
    assert assigns(fresh) == []
    fresh.tick(59.9)
    assert assigns(fresh) == []
    fresh.tick(60.0)
    (retry,) = assigns(fresh)
    assert (retry.worker_id, retry.number) == ("new", 2)
    assert "did not reconnect" in fresh.resolve("r/a").attempts[0].reason


def test_returning_dead_worker_is_told_its_attempts_are_superseded() -> None:
    state = ClusterState(LEASED)
    state.worker_connected(hello("w1"), 0)
    state.submit_run("r", "", [spec("a")], 0)
    (a,) = assigns(state)
    state.tick(11)  # no heartbeat: dead
    state.worker_connected(hello("w2"), 12)
    (retry,) = assigns(state)
    welcome = state.worker_connected(hello("w1", held=(HeldAttempt(a.attempt_id, pid=5, exit=OK),)), 13)
    assert welcome.superseded == (a.attempt_id,)
    assert state.resolve("r/a").state is JobState.ASSIGNED
    finish(state, retry, now=14)
    assert state.resolve("r/a").state is JobState.SUCCEEDED
    assert [at.state.value for at in state.resolve("r/a").attempts] == ["LOST", "SUCCEEDED"]


def test_a_delay_that_ran_out_while_the_master_was_down_is_not_started_again() -> None:
    state, store = ClusterState(LEASED), MemoryStore()
    state.submit_run("r", "", [spec("a", delay=5.0)], 0)
    persist(state, store)  # PENDING until 5
    fresh = restored(store, 7)
    fresh.tick(7)
    assert job_state(fresh, "r/a") is JobState.READY
    early = restored(store, 3)  # not yet due: it becomes ready at 5, not at 3 + 5
    early.tick(5)
    assert job_state(early, "r/a") is JobState.READY


def test_restart_keeps_arrival_order_among_equal_priorities(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from titan_runtime.store import SqliteStore

    store = SqliteStore(tmp_path / "titan.db")
    state = ClusterState()
    names = ["e", "b", "d", "a", "c"]
    state.submit_run("r", "", [spec(n) for n in names], 0)
    store.save(state.take_changes())
    snap = store.load()
    fresh = ClusterState()
    fresh.restore(snap.runs, snap.jobs, snap.attempts, snap.workers, 1)
    fresh.worker_connected(hello("w", slots=1), 2)
    order = []
    for _ in names:
        (a,) = assigns(fresh)
        order.append(a.job_id)
        finish(fresh, a, now=3)
    assert order == names
    store.close()


def test_a_worker_claiming_another_workers_attempt_changes_nothing_of_it() -> None:
    state = ClusterState()
    state.worker_connected(hello("w1"), 0)
    state.submit_run("r", "", [spec("a")], 0)
    (a,) = assigns(state)
    state.attempt_started("w1", a.attempt_id, 42, 1, 1)
    claim = HeldAttempt(a.attempt_id, pid=7)
    welcome = state.worker_connected(hello("intruder", held=(claim,)), 2)
    assert welcome.superseded == (a.attempt_id,)
    job = state.resolve("r/a")
    assert (job.state, job.current.state, job.current.worker_id) == (
        JobState.RUNNING, AttemptState.RUNNING, "w1"
    )  # fmt: skip
    finish(state, a, now=3)
    assert state.resolve("r/a").state is JobState.SUCCEEDED


def test_a_run_is_given_again_only_to_its_submitter() -> None:
    from titan_runtime.core.cluster import NotYours

    state = ClusterState()
    run, existed = state.submit_run("r", "", [spec("a")], 0, submitted_by="run:x")
    assert not existed and run.submitted_by == "run:x" and run.to_row()["submitted_by"] == "run:x"
    assert state.submit_run("r", "", [spec("a")], 1, submitted_by="run:x") == (run, True)
    for other in ("", "run:y"):
        with pytest.raises(NotYours, match="submitted by a job of run x, not by this credential"):
            state.submit_run("r", "", [spec("a")], 1, submitted_by=other)
    assert "submitted_by" not in state.submit_run("s", "", [spec("a")], 2)[0].to_row()  # the cluster's


def test_a_service_keeps_only_the_ports_it_asked_for() -> None:
    from titan_runtime.core.cluster import reported_ports

    named = JobSpec(id="s", command=("x",), kind="service", ports=("http", "admin"))
    fixed = JobSpec(id="f", command=("x",), kind="service", port=8080)
    batch = JobSpec(id="b", command=("x",))
    assert reported_ports(named, {"http": 20001, "admin": 70000, "ssh": 22}) == {"http": 20001}
    assert reported_ports(fixed, {"port": 9999}) == {} and reported_ports(fixed, {"port": 8080}) == {
        "port": 8080
    }
    assert reported_ports(batch, {"port": 20001}) == {}


def test_a_job_no_worker_can_run_says_why_and_fails_after_its_unplaceable_seconds(
    state: ClusterState,
) -> None:
    state.worker_connected(hello("cpu", slots=1), 0)
    state.submit_run("r", "", [spec("gpu", tags=frozenset({"GPU"}), unplaceable_after=30.0)], 0)
    job = state.resolve("r/gpu")
    assert state.waiting_reason(job) == "waiting for a worker with tags {GPU}"
    assert state.next_deadline() == 30.0
    state.tick(29.9)
    assert job.state is JobState.READY
    state.tick(30.0)
    assert job.state is JobState.FAILED
    assert job.reason == "no worker can run it: waiting for a worker with tags {GPU} for 30s"
    assert state.run("r").state is RunState.FAILED


def test_an_unplaceable_deadline_passes_harmlessly_once_a_worker_can_run_the_job(state: ClusterState) -> None:
    state.worker_connected(hello("busy", tags=("GPU",), slots=1), 0)
    gpu = frozenset({"GPU"})
    state.submit_run("r", "", [spec("first", tags=gpu), spec("second", tags=gpu, unplaceable_after=5.0)], 0)
    [first] = assigns(state)
    state.tick(5.0)  # queued behind `first`, but a worker can run it: it waits on
    second = state.resolve("r/second")
    assert second.state is JobState.READY
    assert state.waiting_reason(second).startswith("waiting for a free slot")
    finish(state, first, now=6.0)
    assert [a.job_id for a in assigns(state)] == ["second"]


def test_the_unplaceable_deadline_survives_a_master_restart() -> None:
    store = MemoryStore()
    state = ClusterState(LEASED)
    state.submit_run("r", "", [spec("gpu", tags=frozenset({"GPU"}), unplaceable_after=10.0)], 0)
    persist(state, store)
    fresh = restored(store, 4.0)
    assert fresh.next_deadline() == 10.0
    fresh.tick(10.0)
    assert fresh.resolve("r/gpu").state is JobState.FAILED


def test_an_ended_run_leaves_memory_once_its_last_attempt_has_ended(state: ClusterState) -> None:
    state.worker_connected(hello("w", slots=2), 0)
    state.submit_run("r", "", [spec("a"), spec("b")], 0)
    state.submit_run("other", "", [spec("a", tags=frozenset({"nowhere"}))], 0)
    a, b = assigns(state)
    finish(state, b)
    state.cancel("r", 1)  # its attempt of "a" is still being stopped
    state.take_changes()
    assert state.run("r").state is RunState.CANCELLED
    assert state.evict_finished() == []  # a report of "a" is still to come: the run stays
    finish(state, a, AttemptExit("cancelled", None, "SIGTERM"), now=2)
    assert state.evict_finished() == []  # its end is not committed yet
    state.take_changes()
    (evicted,) = state.evict_finished()
    assert evicted.id == "r" and evicted.counts == {"CANCELLED": 1, "SUCCEEDED": 1}
    assert "r" not in state.runs and state.attempt(a.attempt_id) is None
    assert state.resolve("a").run_id == "other"  # the bare id now finds the live run's job
    state.attempt_finished("w", b.attempt_id, OK, 3)  # a late report of an evicted attempt: rejected
    assert state.evict_finished() == [] and state.has_changes() is False
    state.submit_run("next", "", [spec("x")], 4)
    assert state.run("next").seq == 3  # seqs go on
