"""The autoscaler's plan with quantities (CPUs, memory, GPUs), without processes: demand for them
starts only workers that will have them, free room on running and starting workers is counted by
quantity as well as slots, and what no pool gives is reported naming the quantity."""

from __future__ import annotations

from titan_runtime.core.autoscaler import Autoscaler, Demand, Launch, PoolSpec, pending_demand
from titan_runtime.core.cluster import ClusterState
from titan_runtime.core.effects import WorkerHello
from titan_runtime.core.model import JobSpec, Worker
from titan_runtime.core.resources import Need

NONE: frozenset[str] = frozenset()
ONE_GPU = Need(gpus=1)
# Same tags, one declares two GPUs, one declares none, one declares nothing about GPUs.
GPU = PoolSpec("gpu", slots=8, max=4, max_launching=4, cpus=8, memory_mb=32768, gpus=("0", "1"))
CPU = PoolSpec("cpu", slots=8, max=4, max_launching=4, cpus=8, memory_mb=16384, gpus=())
VAGUE = PoolSpec("vague", slots=8, max=4, max_launching=4)


def launches(actions: list) -> list[Launch]:
    return [a for a in actions if isinstance(a, Launch)]


def pools_of(actions: list) -> list[str]:
    return sorted(a.pool for a in launches(actions))


def worker(
    launch_id: str,
    pool: str = "gpu",
    gpus: tuple[str, ...] = ("0", "1"),
    held: tuple[str, ...] = (),
    cpus: int = 8,
    memory_mb: int = 32768,
    used_memory_mb: int = 0,
    slots: int = 8,
) -> Worker:
    w = Worker(
        id=f"id-{launch_id}",
        name=launch_id,
        tags=frozenset({"GPU"}) if gpus else NONE,
        slots=slots,
        cpu_count=cpus,
        memory_bytes=memory_mb << 20,
        gpus=gpus,
        pool=pool,
        launch_id=launch_id,
    )
    for n, gpu in enumerate(held):
        w.attempts.add(f"a{n}")
        w.used_slots += 1
        w.gpu_holders[gpu] = f"a{n}"
    w.used_memory_mb = used_memory_mb
    return w


def test_a_job_asking_for_a_gpu_starts_a_worker_of_the_pool_that_will_have_one() -> None:
    scaler = Autoscaler([CPU, VAGUE, GPU])
    actions = scaler.step(0.0, [], [Demand(NONE, 1, 1, ONE_GPU)])
    assert pools_of(actions) == ["gpu"]
    assert "1 job(s) need no tags and 1 GPU; no worker has room" in launches(actions)[0].reason
    # A job asking for nothing goes to the closest pool: not the one with GPUs (nor the biggest).
    assert pools_of(Autoscaler([GPU, CPU]).step(0.0, [], [Demand(NONE)])) == ["cpu"]


def test_jobs_share_a_new_worker_by_quantity_not_only_by_slots() -> None:
    scaler = Autoscaler([GPU])
    # 8 slots each, but two GPUs: 5 one-GPU jobs take three workers.
    demand = [Demand(NONE, 1, 5, ONE_GPU)]
    assert pools_of(scaler.step(0.0, [], demand)) == ["gpu"] * 3
    # The three starting workers' GPUs are counted next time: nothing more starts.
    assert launches(scaler.step(1.0, [], demand)) == []
    # Memory too: 12 GiB jobs, 32 GiB workers: two fit in one, and a GPU job still fits beside them.
    memory = Autoscaler([GPU])
    assert len(launches(memory.step(0.0, [], [Demand(NONE, 1, 4, Need(memory_mb=12288))]))) == 2
    # CPUs: 3-CPU jobs on 8-CPU workers.
    cpu = Autoscaler([GPU])
    assert len(launches(cpu.step(0.0, [], [Demand(NONE, 1, 5, Need(millicpus=3000))]))) == 3


def test_free_gpus_and_memory_of_running_workers_are_used_before_starting_one() -> None:
    scaler = Autoscaler([GPU])
    half_busy = worker("gpu-a", held=("0",))
    # One free GPU: one job fits, the second needs a new worker.
    assert launches(scaler.step(0.0, [half_busy], [Demand(NONE, 1, 1, ONE_GPU)])) == []
    assert pools_of(scaler.step(1.0, [half_busy], [Demand(NONE, 1, 2, ONE_GPU)])) == ["gpu"]
    # Free slots are not enough: a worker with room but no free GPU takes no GPU job.
    full = worker("gpu-b", held=("0", "1"))
    assert pools_of(Autoscaler([GPU]).step(0.0, [full], [Demand(NONE, 1, 1, ONE_GPU)])) == ["gpu"]
    # Nor is free memory below what is asked: 24 of 32 GiB used, a 12 GiB job needs a new worker...
    used = worker("gpu-c", used_memory_mb=24576)
    assert pools_of(Autoscaler([GPU]).step(0.0, [used], [Demand(NONE, 1, 1, Need(memory_mb=12288))])) == [
        "gpu"
    ]
    # ...while an 8 GiB one fits there, and a job asking nothing always fits free slots.
    assert launches(Autoscaler([GPU]).step(0.0, [used], [Demand(NONE, 1, 1, Need(memory_mb=8192))])) == []
    assert launches(Autoscaler([GPU]).step(0.0, [full], [Demand(NONE, 1, 6)])) == []


def test_a_pool_never_launches_for_a_quantity_it_does_not_declare_and_says_so() -> None:
    scaler = Autoscaler([VAGUE])
    demand = [Demand(NONE, 1, 3, ONE_GPU)]
    assert scaler.step(0.0, [], demand) == []
    assert scaler.step(1.0, [], demand) == []
    (event,) = scaler.events  # once, not at every step
    assert event.kind == "unserved"
    assert event.message == (
        "3 job(s) need no tags and 1 GPU, which no pool gives "
        "(pool vague: it does not declare gpus, so it cannot count on any)"
    )
    assert scaler.status()[0].note == (
        "cannot take the 3 job(s) needing no tags and 1 GPU: it does not declare gpus, so it cannot count on any"
    )
    assert scaler.unserved == [NONE]
    assert scaler.unserved_reasons == [event.message]
    # The same pool grows for jobs that ask for nothing it does not know.
    assert pools_of(scaler.step(2.0, [], [Demand(NONE)])) == ["vague"]
    for need, what in (
        (Need(memory_mb=1024), "it does not declare memory"),
        (Need(millicpus=500), "it does not declare cpus"),
    ):
        other = Autoscaler([VAGUE])
        assert other.step(0.0, [], [Demand(NONE, 1, 1, need)]) == []
        assert what in other.events[0].message


def test_what_does_not_fit_is_named_with_the_quantity_each_pool_has() -> None:
    scaler = Autoscaler([GPU, CPU])
    scaler.step(0.0, [], [Demand(NONE, 1, 1, Need(gpus=4))])
    assert scaler.events[-1].message == (
        "1 job(s) need no tags and 4 GPUs, which no pool gives "
        "(pool gpu: its workers will have 2 GPUs, not 4; pool cpu: its workers will have 0 GPUs, not 4)"
    )
    scaler.step(1.0, [], [Demand(NONE, 1, 1, Need(memory_mb=65536))])
    assert "pool gpu: its workers will have 32 GiB of memory, not 64 GiB" in scaler.events[-1].message
    scaler.step(2.0, [], [Demand(NONE, 1, 1, Need(millicpus=16500))])
    assert "pool cpu: its workers will have 8 CPU(s), not 16.5" in scaler.events[-1].message
    # Tags no pool has at all: said as before, without listing every pool.
    scaler.step(3.0, [], [Demand(frozenset({"TPU"}), 1, 1, ONE_GPU)])
    assert scaler.events[-1].message == "jobs wait for tags {TPU}, which no pool serves"
    assert launches(scaler.step(4.0, [], [Demand(NONE, 1, 1, Need(gpus=4))])) == []


def test_a_pool_that_gives_gpus_serves_jobs_that_need_the_gpu_tag() -> None:
    # Its workers add GPU to their tags (as a worker with devices does), so `tags: [GPU]` jobs go there.
    scaler = Autoscaler([CPU, PoolSpec("plain-gpu", gpus=("0",), max=2)])
    assert pools_of(scaler.step(0.0, [], [Demand(frozenset({"GPU"}))])) == ["plain-gpu"]
    assert PoolSpec("x", gpus=("0",)).worker_tags == {"GPU"}
    assert PoolSpec("x", gpus=()).worker_tags == NONE


def test_a_closer_pool_at_its_max_sends_jobs_to_the_next_one_that_has_enough() -> None:
    small = PoolSpec("small", max=1, cpus=2, memory_mb=4096, gpus=("0",))
    big = PoolSpec("big", max=3, cpus=32, memory_mb=262144, gpus=("0", "1", "2", "3"))
    scaler = Autoscaler([big, small])
    actions = scaler.step(0.0, [], [Demand(NONE, 1, 2, ONE_GPU)])
    assert pools_of(actions) == ["big", "small"]  # small first (closest); at its max, big takes the other
    assert "at its max of 1 worker(s)" in {s.spec.name: s.note for s in scaler.status()}["small"]


def test_pending_demand_groups_queued_jobs_by_what_they_ask_for() -> None:
    state = ClusterState()
    specs = [
        JobSpec(id="a", command=("true",), gpus=1),
        JobSpec(id="b", command=("true",), gpus=1),
        JobSpec(id="c", command=("true",), gpus=1, memory_mb=2048),
        JobSpec(id="d", command=("true",), cpus=0.5),
        JobSpec(id="e", command=("true",)),
    ]
    state.submit_run("r1", "r", specs, 0.0)
    found = {(d.tags, d.slots, d.need): d.count for d in pending_demand(state)}
    assert found == {
        (NONE, 1, ONE_GPU): 2,
        (NONE, 1, Need(gpus=1, memory_mb=2048)): 1,
        (NONE, 1, Need(millicpus=500)): 1,
        (NONE, 1, Need()): 1,
    }
    # A worker with one GPU takes a GPU job (and the rest that fit); the plan no longer counts it.
    hello = WorkerHello("w", "w", slots=8, cpu_count=4, memory_bytes=8 << 30, gpus=("0",))
    state.worker_connected(hello, 1.0)
    left = {(d.need, d.count) for d in pending_demand(state)}
    assert left == {(ONE_GPU, 1), (Need(gpus=1, memory_mb=2048), 1)} or left == {(ONE_GPU, 2)}
