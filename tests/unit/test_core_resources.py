"""Resources as quantities in the core: parsing, placement that fits every quantity, GPU devices
given and given back, across adoption and a master restart. Events in, effects out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from titan_runtime.core.cluster import ClusterConfig, ClusterState
from titan_runtime.core.effects import Assign, AttemptExit, HeldAttempt, WorkerHello
from titan_runtime.core.model import InvalidSpec, JobSpec, JobState
from titan_runtime.core.resources import (
    Need,
    format_memory,
    parse_cpus,
    parse_gpu_ids,
    parse_gpus,
    parse_memory,
    parse_resources,
)
from titan_runtime.store import MemoryStore

OK = AttemptExit("succeeded", 0)
GIB = 1 << 30


def spec(job_id: str, **kw: object) -> JobSpec:
    return JobSpec(id=job_id, command=("true",), **kw)  # type: ignore[arg-type]


def hello(
    worker_id: str,
    slots: int = 8,
    cpus: int = 4,
    memory_gb: int = 16,
    gpus: tuple[str, ...] = (),
    held: tuple[HeldAttempt, ...] = (),
) -> WorkerHello:
    return WorkerHello(
        worker_id=worker_id,
        name=worker_id,
        slots=slots,
        cpu_count=cpus,
        memory_bytes=memory_gb * GIB,
        gpus=gpus,
        held=held,
    )


def assigns(state: ClusterState) -> list[Assign]:
    return [e for e in state.take_effects() if isinstance(e, Assign)]


@pytest.fixture
def state() -> ClusterState:
    return ClusterState(ClusterConfig(lease_timeout=1e6))


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "mb"),
    [(512, 512), ("512", 512), ("512M", 512), ("512Mi", 512), ("8G", 8192), ("8GB", 8192), ("1.5g", 1536),
     ("2T", 2 << 20), ("2048K", 2), (" 4 Gi ", 4096), (0, 0)],
)  # fmt: skip
def test_memory_sizes_read_as_people_write_them(text: object, mb: int) -> None:
    assert parse_memory(text) == mb


@pytest.mark.parametrize("text", ["lots", "-1G", "8X", "", True, None, "nan", "1K", float("inf")])
def test_memory_that_is_not_a_size_is_refused_saying_what_is_wanted(text: object) -> None:
    with pytest.raises(ValueError, match="memory"):
        parse_memory(text)


def test_cpus_gpus_and_device_lists() -> None:
    assert parse_cpus(2) == 2.0 and parse_cpus("0.5") == 0.5 and parse_cpus("250m") == 0.25
    for bad in ("two", -1, float("nan"), True, "0.0001"):
        with pytest.raises(ValueError, match="cpus"):
            parse_cpus(bad)
    assert parse_gpus(1) == 1 and parse_gpus("2") == 2 and parse_gpus(2.0) == 2
    for bad in (0.5, -1, "one", True, 5000):
        with pytest.raises(ValueError, match="whole number of GPUs"):
            parse_gpus(bad)
    assert parse_gpu_ids("0,1") == ("0", "1") and parse_gpu_ids("none") == () and parse_gpu_ids("") == ()
    assert parse_gpu_ids("GPU-8a7b,MIG-1") == ("GPU-8a7b", "MIG-1")
    with pytest.raises(ValueError, match="listed twice"):
        parse_gpu_ids("0,0")
    with pytest.raises(ValueError, match="not a device id"):
        parse_gpu_ids("0,;rm")


def test_a_resources_mapping_names_what_is_wrong() -> None:
    assert parse_resources({"cpus": 2, "memory": "8G", "gpus": 1}) == (2.0, 8192, 1)
    assert parse_resources({"memory_mb": 512}) == (0.0, 512, 0)
    with pytest.raises(ValueError, match=r"job a: unknown resources \['disk'\]"):
        parse_resources({"disk": "1G"}, "job a: ")
    with pytest.raises(ValueError, match="not both"):
        parse_resources({"memory": "1G", "memory_mb": 5})
    with pytest.raises(ValueError, match="memory_mb must be a whole number"):
        parse_resources({"memory_mb": "5G"})


def test_needs_describe_themselves() -> None:
    assert Need(2000, 8192, 1).describe() == "2 CPUs, 8 GiB of memory, 1 GPU"
    assert Need(500).describe() == "0.5 CPUs" and Need(1000).describe() == "1 CPU"
    assert format_memory(1536) == "1.5 GiB" and format_memory(100) == "100 MiB"
    assert not Need() and spec("a").need == Need()


def test_the_spec_refuses_quantities_out_of_range() -> None:
    for kw, word in ((dict(cpus=-1.0), "cpus"), (dict(cpus=float("nan")), "cpus"), (dict(gpus=-1), "gpus"),
                     (dict(memory_mb=-5), "memory")):  # fmt: skip
        with pytest.raises(InvalidSpec, match=f"resources.{word}"):
            spec("a", **kw).validate()
    spec("a", cpus=0.5, memory_mb=100, gpus=2).validate()


# ---------------------------------------------------------------- placement


def test_gpus_are_given_as_distinct_devices_and_given_back(state: ClusterState) -> None:
    state.worker_connected(hello("w", gpus=("0", "1")), 0)
    state.submit_run("r", "", [spec(f"g{i}", gpus=1) for i in range(3)], 0)
    first = assigns(state)
    assert sorted(a.gpus for a in first) == [("0",), ("1",)]
    waiting = next(j for j in state.runs["r"].jobs.values() if j.state is JobState.READY)
    assert state.waiting_reason(waiting) == "waiting for free resources (1 slot(s), 1 GPU)"
    state.attempt_finished("w", first[1].attempt_id, OK, 1)
    (third,) = assigns(state)
    assert third.gpus == first[1].gpus  # the device given back is given again
    assert state.workers["w"].gpu_holders == {
        first[0].gpus[0]: first[0].attempt_id,
        third.gpus[0]: third.attempt_id,
    }


def test_a_job_that_asks_for_more_does_not_block_jobs_that_fit(state: ClusterState) -> None:
    state.worker_connected(hello("w", cpus=2, gpus=("0",)), 0)
    state.submit_run("r", "", [spec("hold", gpus=1)], 0)
    assert [a.job_id for a in assigns(state)] == ["hold"]
    # Higher priority, but its GPU is taken: the lower-priority jobs behind it run meanwhile.
    state.submit_run("s", "", [spec("gpu", gpus=1, priority=10), spec("cpu", cpus=1), spec("plain")], 1)
    assert sorted(a.job_id for a in assigns(state)) == ["cpu", "plain"]


def test_every_quantity_is_packed_and_none_over_committed(state: ClusterState) -> None:
    state.worker_connected(hello("w", slots=100, cpus=4, memory_gb=8), 0)
    state.submit_run("r", "", [spec(f"c{i}", cpus=1.5) for i in range(3)], 0)
    assert len(assigns(state)) == 2  # 3 of 4 CPUs held; 1.5 more does not fit
    state.submit_run("m", "", [spec(f"m{i}", memory_mb=3 * 1024) for i in range(3)], 1)
    assert len(assigns(state)) == 2  # 6 of 8 GiB
    state.submit_run("h", "", [spec("half", cpus=0.5, memory_mb=1024)], 2)
    assert [a.job_id for a in assigns(state)] == ["half"]  # what is left fits exactly
    worker = state.workers["w"]
    assert (worker.used_millicpus, worker.used_memory_mb) == (3500, 7 * 1024)


def test_jobs_that_ask_go_where_they_fit_best(state: ClusterState) -> None:
    state.worker_connected(hello("big", gpus=("0", "1", "2", "3")), 0)
    state.worker_connected(hello("small", gpus=("0",)), 0)
    state.submit_run("r", "", [spec("one", gpus=1)], 0)
    assert [a.worker_id for a in assigns(state)] == ["small"]  # the 4-GPU machine stays whole
    state.submit_run("s", "", [spec("four", gpus=4)], 1)
    assert [(a.worker_id, a.gpus) for a in assigns(state)] == [("big", ("0", "1", "2", "3"))]


def test_a_job_no_worker_could_ever_hold_says_what_the_largest_offers(state: ClusterState) -> None:
    state.worker_connected(hello("w", cpus=4, memory_gb=16), 0)
    state.submit_run("r", "", [spec("huge", memory_mb=64 * 1024, unplaceable_after=5)], 0)
    assert assigns(state) == []
    job = state.resolve("r/huge")
    assert state.waiting_reason(job) == (
        "waiting for a worker with 1 slot(s) and 64 GiB of memory "
        "(the largest that could: w, 8 slots, 4 CPUs, 16 GiB, 0 GPUs)"
    )
    state.tick(6)
    assert job.state is JobState.FAILED and "64 GiB of memory" in job.reason


def test_devices_survive_adoption_and_a_master_restart() -> None:
    store = MemoryStore()
    state = ClusterState(ClusterConfig(lease_timeout=1e6))
    state.worker_connected(hello("w", gpus=("0", "1")), 0)
    state.submit_run("r", "", [spec("a", gpus=1, cpus=1, memory_mb=100)], 0)
    (placed,) = assigns(state)
    state.attempt_started("w", placed.attempt_id, 11, 1, 1)
    store.save(state.take_changes())

    snap = store.load()
    later = iter(range(100, 1000))
    fresh = ClusterState(ClusterConfig(lease_timeout=10.0), new_id=lambda: f"b{next(later)}")
    fresh.restore(snap.runs, snap.jobs, snap.attempts, snap.workers, 100)
    worker = fresh.workers["w"]
    assert worker.gpu_holders == {placed.gpus[0]: placed.attempt_id}
    assert (worker.used_millicpus, worker.used_memory_mb) == (1000, 100)
    fresh.worker_connected(
        hello("w", gpus=("0", "1"), held=(HeldAttempt(placed.attempt_id, pid=11, started_at=1),)), 101
    )
    fresh.submit_run("s", "", [spec("b", gpus=1), spec("c", gpus=1)], 102)
    (second,) = assigns(fresh)
    assert second.gpus != placed.gpus  # the adopted job keeps its device
    fresh.attempt_finished("w", placed.attempt_id, OK, 103)
    (third,) = assigns(fresh)
    assert third.gpus == placed.gpus
    assert (worker.used_millicpus, worker.used_memory_mb) == (0, 0)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3000), st.integers(0, 2), st.booleans()),
        min_size=1,
        max_size=30,
    )
)
def test_whatever_is_asked_and_ended_nothing_is_over_committed_or_leaked(steps: list) -> None:
    state = ClusterState(ClusterConfig(lease_timeout=1e6))
    state.worker_connected(hello("a", slots=4, cpus=2, memory_gb=4, gpus=("0", "1")), 0)
    state.worker_connected(hello("b", slots=4, cpus=4, memory_gb=2, gpus=()), 0)
    running: list[Assign] = []
    for n, (cpus, memory, gpus, finish_one) in enumerate(steps):
        state.submit_run(f"r{n}", "", [spec("j", cpus=float(cpus), memory_mb=memory, gpus=gpus)], n)
        if finish_one and running:
            done = running.pop(0)
            state.attempt_finished(done.worker_id, done.attempt_id, OK, n)
        running += assigns(state)
        for worker in state.workers.values():
            held = [a for a in running if a.worker_id == worker.id]
            assert (
                worker.used_millicpus
                == sum(round(a.spec.cpus * 1000) for a in held)
                <= worker.cpu_count * 1000
            )
            assert worker.used_memory_mb == sum(a.spec.memory_mb for a in held) <= worker.memory_bytes >> 20
            devices = [g for a in held for g in a.gpus]
            assert len(devices) == len(set(devices)) == len(worker.gpu_holders) <= len(worker.gpus)
            assert all(len(a.gpus) == a.spec.gpus for a in held)
