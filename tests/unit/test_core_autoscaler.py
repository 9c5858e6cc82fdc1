"""The autoscaler's decisions, without processes: time, workers and waiting jobs are passed in."""

from __future__ import annotations

from titan_runtime.core.autoscaler import (
    Autoscaler,
    Demand,
    Drain,
    Launch,
    PoolSpec,
    Retire,
    ScaleEvent,
    pending_demand,
)
from titan_runtime.core.cluster import ClusterState
from titan_runtime.core.effects import WorkerHello
from titan_runtime.core.model import JobSpec, Worker, WorkerState

CPU = PoolSpec("cpu", tags=frozenset({"CPU"}), slots=2, min=0, max=3, idle_timeout=10, max_launching=3)


def worker(
    launch_id: str,
    pool: str = "cpu",
    tags: frozenset[str] = frozenset({"CPU"}),
    slots: int = 2,
    busy: int = 0,
    state: WorkerState = WorkerState.ALIVE,
) -> Worker:
    w = Worker(
        id=f"id-{launch_id}",
        name=launch_id,
        tags=tags,
        slots=slots,
        state=state,
        pool=pool,
        launch_id=launch_id,
    )
    w.attempts = {f"a{i}" for i in range(busy)}
    w.used_slots = busy
    return w


def launches(actions: list) -> list[Launch]:
    return [a for a in actions if isinstance(a, Launch)]


def kinds(scaler: Autoscaler) -> list[str]:
    return [e.kind for e in scaler.events]


def test_waiting_jobs_start_enough_workers_for_their_slots_and_no_more() -> None:
    scaler = Autoscaler([CPU])
    actions = scaler.step(0.0, [], [Demand(frozenset({"CPU"}), 1, 3)])
    # 3 one-slot jobs on 2-slot workers: 2 workers.
    assert [a.pool for a in launches(actions)] == ["cpu", "cpu"]
    assert "3 job(s) need tags {CPU}" in launches(actions)[0].reason
    # Next step, same demand: the starting workers will take it; nothing new.
    assert launches(scaler.step(1.0, [], [Demand(frozenset({"CPU"}), 1, 3)])) == []


def test_never_above_max_and_the_scale_up_rate_is_bounded() -> None:
    pool = PoolSpec("cpu", tags=frozenset({"CPU"}), slots=1, max=5, max_launching=2)
    scaler = Autoscaler([pool])
    burst = [Demand(frozenset({"CPU"}), 1, 20)]
    first = launches(scaler.step(0.0, [], burst))
    assert len(first) == 2  # max_launching
    assert "already starting" in scaler.status()[0].note
    registered = [worker(a.launch_id, slots=1, busy=1) for a in first]
    second = launches(scaler.step(1.0, registered, burst))
    assert len(second) == 2
    registered += [worker(a.launch_id, slots=1, busy=1) for a in second]
    third = launches(scaler.step(2.0, registered, burst))
    assert len(third) == 1  # 5 in all: the max
    registered += [worker(a.launch_id, slots=1, busy=1) for a in third]
    assert launches(scaler.step(3.0, registered, burst)) == []
    assert scaler.status()[0].note == "at its max of 5 worker(s)"


def test_jobs_are_routed_to_the_pool_whose_tags_satisfy_them_most_closely() -> None:
    gpu = PoolSpec("gpu", tags=frozenset({"GPU", "CPU"}), slots=1, max=2)
    cpu = PoolSpec("cpu", tags=frozenset({"CPU"}), slots=1, max=2)
    scaler = Autoscaler([gpu, cpu])
    actions = launches(scaler.step(0.0, [], [Demand(frozenset({"CPU"})), Demand(frozenset({"GPU"}))]))
    assert sorted(a.pool for a in actions) == ["cpu", "gpu"]


def test_jobs_no_pool_serves_are_reported_once_and_start_nothing() -> None:
    scaler = Autoscaler([CPU])
    need = [Demand(frozenset({"TPU"}))]
    assert scaler.step(0.0, [], need) == []
    assert scaler.step(1.0, [], need) == []
    assert kinds(scaler) == ["unserved"]
    assert scaler.unserved == [frozenset({"TPU"})]
    # A job larger than the pool's workers cannot be served either.
    assert scaler.step(2.0, [], [Demand(frozenset({"CPU"}), slots=4)]) == []


def test_existing_free_slots_are_used_before_starting_workers() -> None:
    scaler = Autoscaler([CPU])
    idle = Worker(id="w", name="w", tags=frozenset({"CPU"}), slots=4)
    assert launches(scaler.step(0.0, [idle], [Demand(frozenset({"CPU"}), 1, 4)])) == []
    assert len(launches(scaler.step(0.0, [idle], [Demand(frozenset({"CPU"}), 1, 5)]))) == 1


def test_min_is_kept_even_without_demand() -> None:
    pool = PoolSpec("base", min=2, max=4, max_launching=4)
    scaler = Autoscaler([pool])
    actions = launches(scaler.step(0.0, [], []))
    assert len(actions) == 2 and "below its min of 2" in actions[0].reason
    assert launches(scaler.step(1.0, [], [])) == []  # they are starting


def test_idle_workers_are_drained_after_the_idle_timeout_never_below_min() -> None:
    pool = PoolSpec("cpu", tags=frozenset({"CPU"}), slots=1, min=1, max=3, idle_timeout=10, max_launching=3)
    scaler = Autoscaler([pool])
    started = launches(scaler.step(0.0, [], [Demand(frozenset({"CPU"}), 1, 3)]))
    workers = [worker(a.launch_id, slots=1, busy=1) for a in started]
    scaler.step(1.0, workers, [])
    for w in workers:  # the jobs end
        w.attempts, w.used_slots = set(), 0
    assert scaler.step(2.0, workers, []) == []  # idle from now on
    assert scaler.step(11.9, workers, []) == []
    drains = scaler.step(12.5, workers, [])
    assert all(isinstance(a, Drain) for a in drains) and len(drains) == 2  # min 1 is kept
    assert "idle for 10s" in drains[0].reason
    assert scaler.step(100.0, workers, []) == []  # the last one stays: min
    # The drained workers leave: their launches retire, gracefully.
    for w in workers:
        if w.id in {d.worker_id for d in drains}:
            w.state = WorkerState.LEFT
    retired = scaler.step(101.0, workers, [])
    assert sorted(type(a).__name__ for a in retired) == ["Retire", "Retire"]
    assert all(isinstance(a, Retire) and not a.force for a in retired)
    assert [s.workers for s in scaler.status()] == [1]


def test_a_busy_worker_is_not_descaled_and_idleness_restarts_after_work() -> None:
    scaler = Autoscaler([CPU])
    (launch,) = launches(scaler.step(0.0, [], [Demand(frozenset({"CPU"}))]))
    w = worker(launch.launch_id, busy=1)
    scaler.step(1.0, [w], [])
    assert scaler.step(50.0, [w], []) == []  # busy all along
    w.attempts, w.used_slots = set(), 0
    scaler.step(51.0, [w], [])
    assert scaler.step(60.0, [w], []) == []
    assert isinstance(scaler.step(61.5, [w], [])[0], Drain)


def test_a_growing_pool_descales_nothing() -> None:
    scaler = Autoscaler([CPU])
    (launch,) = launches(scaler.step(0.0, [], [Demand(frozenset({"CPU"}))]))
    w = worker(launch.launch_id)
    scaler.step(1.0, [w], [])
    # Long idle, but now jobs wait that it cannot take (they need 2 slots each, it has 2 free)...
    actions = scaler.step(30.0, [w], [Demand(frozenset({"CPU"}), 2, 3)])
    assert launches(actions) and not [a for a in actions if isinstance(a, Drain)]


def test_a_launch_that_never_registers_fails_is_stopped_and_the_pool_backs_off() -> None:
    pool = PoolSpec(
        "cpu", tags=frozenset({"CPU"}), max=3, register_timeout=5, backoff_initial=2, backoff_max=8
    )
    scaler = Autoscaler([pool])
    need = [Demand(frozenset({"CPU"}))]
    (first,) = launches(scaler.step(0.0, [], need))
    assert scaler.step(5.0, [], need) == []  # still within its deadline
    actions = scaler.step(5.5, [], need)
    assert actions == [
        Retire("cpu", first.launch_id, "did not register within 5s (register_timeout); stopped it", True)
    ]
    assert kinds(scaler)[-2:] == ["launch_failed", "backoff"]
    assert "backing off" in scaler.status()[0].note
    assert launches(scaler.step(7.0, [], need)) == []  # backing off 2s
    assert len(launches(scaler.step(7.6, [], need))) == 1
    scaler.step(13.0, [], need)  # fails too: 4s now
    assert launches(scaler.step(16.9, [], need)) == []
    assert len(launches(scaler.step(17.1, [], need))) == 1
    # Over a long time, at most one launch per register_timeout + backoff_max: no spawning spree.
    t, count = 17.1, 3
    while t < 600:
        t += 0.5
        count += len(launches(scaler.step(t, [], need)))
    assert count <= 3 + 600 / (5 + 8)
    # Once one registers, failures are forgiven.
    while not scaler.launches:
        t += 0.5
        scaler.step(t, [], need)
    (launch_id,) = scaler.launches
    scaler.step(t, [worker(launch_id, slots=1)], need)
    assert scaler.status()[0].failures == 0


def test_a_provider_failure_or_an_early_exit_counts_as_a_failed_launch() -> None:
    scaler = Autoscaler([CPU])
    (launch,) = launches(scaler.step(0.0, [], [Demand(frozenset({"CPU"}))]))
    actions = scaler.launch_failed(launch.launch_id, 1.0, "ssh: connection refused")
    assert actions == [Retire("cpu", launch.launch_id, "ssh: connection refused", True)]
    assert "ssh: connection refused" in scaler.events[-2].message
    assert scaler.launch_failed(launch.launch_id, 1.0, "again") == []  # only once
    scaler2 = Autoscaler([CPU])
    (launch,) = launches(scaler2.step(0.0, [], [Demand(frozenset({"CPU"}))]))
    (retire,) = scaler2.process_exited(launch.launch_id, 1.0, "exit code 2")
    assert retire.force and "exited before registering: exit code 2" in retire.reason


def test_a_registered_worker_that_dies_is_retired_by_force_and_replaced_if_needed() -> None:
    scaler = Autoscaler([CPU])
    need = [Demand(frozenset({"CPU"}))]
    (launch,) = launches(scaler.step(0.0, [], need))
    w = worker(launch.launch_id, busy=1)
    scaler.step(1.0, [w], [])
    w.state = WorkerState.DEAD
    actions = scaler.step(2.0, [w], need)
    assert Retire("cpu", launch.launch_id, "worker was declared dead", True) in actions
    assert len(launches(actions)) == 1  # its job is waiting again: a replacement


def test_a_descaled_worker_that_comes_back_is_drained_again() -> None:
    scaler = Autoscaler([CPU])
    (launch,) = launches(scaler.step(0.0, [], [Demand(frozenset({"CPU"}))]))
    w = worker(launch.launch_id)
    scaler.step(1.0, [w], [])
    (drain,) = scaler.step(12.0, [w], [])
    assert isinstance(drain, Drain)
    w.state = WorkerState.LEFT
    scaler.step(13.0, [w], [])
    back = worker(launch.launch_id)  # the same launch registers again
    back.id = "id-again"
    actions = scaler.step(14.0, [back], [])
    assert actions == [Drain("cpu", launch.launch_id, "id-again", "descaled earlier; it came back")]
    assert kinds(scaler)[-1] == "returned"


def test_workers_of_a_pool_started_before_the_master_are_adopted_and_descaled() -> None:
    scaler = Autoscaler([CPU])
    w = worker("cpu-old")
    assert scaler.step(0.0, [w], []) == []
    assert kinds(scaler) == ["adopted"]
    assert scaler.status()[0].workers == 1
    assert isinstance(scaler.step(11.0, [w], [])[0], Drain)
    # Workers of no pool are never touched.
    assert Autoscaler([CPU]).step(100.0, [worker("x", pool="")], []) == []


def test_every_decision_is_an_event_with_its_reason_and_the_list_is_bounded() -> None:
    scaler = Autoscaler([CPU], max_events=3)
    scaler.step(0.0, [], [Demand(frozenset({"CPU"}), 1, 5)])
    assert len(scaler.events) == 3
    assert all(e.kind == "launch" and "job(s) need tags {CPU}" in e.message for e in scaler.events)
    event = scaler.events[0]
    assert ScaleEvent.from_dict(event.to_dict()) == event


def test_pending_demand_groups_queued_jobs_and_leaves_out_pinned_ones() -> None:
    state = ClusterState()
    specs = [
        JobSpec(id="a", command=("true",), tags=frozenset({"GPU"})),
        JobSpec(id="b", command=("true",), tags=frozenset({"GPU"})),
        JobSpec(id="c", command=("true",), slots=2),
        JobSpec(id="d", command=("true",), node="somewhere"),
    ]
    state.submit_run("r1", "r", specs, 0.0)
    needs = {(n.tags, n.slots): n.count for n in pending_demand(state)}
    assert needs == {(frozenset({"GPU"}), 1): 2, (frozenset(), 2): 1}
    # Once a worker takes them, they no longer wait.
    state.worker_connected(WorkerHello("w", "w", tags=frozenset({"GPU"}), slots=4), 1.0)
    assert {(n.tags, n.slots) for n in pending_demand(state)} == set()
