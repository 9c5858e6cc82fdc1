"""`titan/resources` with quantities (cpus, memory, gpus) besides slots, without processes: what the
tag parses to, what it refuses and how, what the job spec then carries, and the warning when no
connected worker could hold a step."""

from __future__ import annotations

from typing import Any

import pytest

from titan_dagster.errors import TitanConfigError
from titan_dagster.pipes import PipesTitanClient
from titan_dagster.placement import Placement, placement_for_step
from titan_dagster.step_handler import why_unplaceable
from titan_runtime import TitanJob, WorkerRecord
from titan_runtime.client.specs import job_specs

GIB = 1024


@pytest.mark.parametrize(
    ("tag", "slots", "cpus", "memory_mb", "gpus"),
    [
        ('{"slots": 2, "cpus": 2, "memory": "8G", "gpus": 1}', 2, 2.0, 8 * GIB, 1),
        ("cpus=2,memory=8G,gpus=1", 1, 2.0, 8 * GIB, 1),
        (" slots = 3 , gpus = 2 ", 3, 0.0, 0, 2),
        ("cpus=0.5,memory=512", 1, 0.5, 512, 0),
        ("cpus=500m", 1, 0.5, 0, 0),
        ('{"memory_mb": 1024}', 1, 0.0, 1024, 0),
        ("memory_mb=1024", 1, 0.0, 1024, 0),
        ('{"memory": "1.5GiB"}', 1, 0.0, 1536, 0),
        ('{"gpus": "2", "cpus": "1.5"}', 1, 1.5, 0, 2),
        ('{"gpus": 0}', 1, 0.0, 0, 0),
        ("slots=2", 2, 0.0, 0, 0),
        ("", 1, 0.0, 0, 0),
    ],
)
def test_the_tag_takes_slots_cpus_memory_and_gpus_in_both_spellings(
    tag: str, slots: int, cpus: float, memory_mb: int, gpus: int
) -> None:
    defaults = Placement(requirement=("dagster",), priority=4, timeout=60.0)
    placement = placement_for_step("train", {"titan/resources": tag}, defaults)
    assert placement == Placement(
        requirement=("dagster",),
        priority=4,
        timeout=60.0,
        slots=slots,
        cpus=cpus,
        memory_mb=memory_mb,
        gpus=gpus,
    )


def test_the_job_asks_for_exactly_the_quantities_of_the_tag() -> None:
    asked = placement_for_step("s", {"titan/resources": "cpus=2,memory=8G,gpus=1"}, Placement())
    assert asked.resources() == {"cpus": 2.0, "memory_mb": 8 * GIB, "gpus": 1}
    assert asked.describe_resources() == "1 slot, 2 CPUs, 8 GiB of memory, 1 GPU"
    only_slots = placement_for_step("s", {"titan/resources": "slots=2"}, Placement())
    assert only_slots.resources() is None  # nothing beyond slots: the spec stays as before
    # The tag replaces slots and quantities whole: a tag without gpus asks for none.
    assert placement_for_step("s", {"titan/resources": "cpus=1"}, asked).gpus == 0


@pytest.mark.parametrize(
    "tag",
    ['{"slots": 2, "cpus": 2, "memory": "8G", "gpus": 1}', "cpus=0.25,memory=300M,gpus=3", "memory_mb=64"],
)
def test_what_the_tag_gives_the_job_is_what_the_sdk_submits(tag: str) -> None:
    """The SDK's own submit-time check (job_spec) takes the tag's parsed form and sends it on the wire."""
    placement = placement_for_step("s", {"titan/resources": tag}, Placement())
    job = TitanJob("step", command=["true"], slots=placement.slots, resources=placement.resources())
    ops = job_specs([job], None)
    with pytest.raises(StopIteration) as done:  # a command job uploads nothing: no call is made
        next(ops)
    [spec] = done.value.value
    assert (spec.slots, spec.cpus, spec.memory_mb, spec.gpus) == (
        placement.slots,
        pytest.approx(placement.cpus),
        placement.memory_mb,
        placement.gpus,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"gpus": 1.5}', "resources.gpus must be a whole number of GPUs from 0 to 1024, not 1.5"),
        ("gpus=two", "resources.gpus must be a whole number of GPUs from 0 to 1024, not 'two'"),
        ("gpus=-1", "resources.gpus must be a whole number of GPUs"),
        ('{"gpus": true}', "resources.gpus must be a whole number of GPUs"),
        ("gpus=2000", "resources.gpus must be a whole number of GPUs from 0 to 1024, not 2000"),
        (
            "memory=8X",
            "resources.memory must be a size such as 512M, 8G or 1.5T (a bare number is MiB), not '8X'",
        ),
        ('{"memory": "0.5K"}', "resources.memory '0.5K' is less than 1 MiB"),
        ('{"memory": "8G", "memory_mb": 8192}', "give resources.memory or resources.memory_mb, not both"),
        ('{"memory_mb": "8G"}', "resources.memory_mb must be a whole number of megabytes"),
        ("cpus=lots", "resources.cpus must be a number of CPUs such as 2 or 0.5, not 'lots'"),
        ('{"cpus": -1}', "resources.cpus must be between 0 and 1,000,000, not -1"),
        ('{"cpus": 0.0001}', "resources.cpus 0.0001 is less than 0.001 CPU"),
        ("gpus=1,gpus=2", "resources 'gpus=1,gpus=2' gives gpus twice"),
        (
            '{"slots": 2, "tpus": 1}',
            "unknown resource(s) ['tpus']; resources are slots, cpus, memory",
        ),
        ("=1", "resources must look like"),
        ("gpus", "resources must look like"),
        ('{"gpus": 1', "is not valid JSON"),
        ('{"slots": 0, "gpus": 1}', "slots must be a whole number of at least 1, not 0"),
        ('{"slots": true}', "slots must be a whole number of at least 1, not True"),
        (["gpus", 1], "resources must be a mapping such as"),
    ],
)
def test_a_bad_resources_tag_says_which_step_tag_and_value(value: Any, expected: str) -> None:
    with pytest.raises(TitanConfigError) as caught:
        placement_for_step("train", {"titan/resources": value}, Placement())
    message = str(caught.value)
    assert message.startswith('step "train", tag titan/resources: '), message
    assert expected in message, message


def test_the_pipes_client_takes_resources_and_run_replaces_them() -> None:
    client = PipesTitanClient("127.0.0.1:1", "t", requirement="GPU", resources="gpus=1,memory=2G")
    assert (client.placement.gpus, client.placement.memory_mb, client.placement.requirement) == (
        1,
        2 * GIB,
        ("GPU",),
    )
    replaced = client._placement("cuda12", None, None, {"gpus": 2, "slots": 2})
    assert (replaced.requirement, replaced.slots, replaced.gpus, replaced.memory_mb) == (
        ("GPU", "cuda12"),
        2,
        2,
        0,
    )
    assert client._placement(None, 5, None, None) == Placement(
        requirement=("GPU",), priority=5, gpus=1, memory_mb=2 * GIB
    )
    with pytest.raises(TitanConfigError, match=r"^PipesTitanClient, resources: resources\.gpus must be"):
        PipesTitanClient(resources={"gpus": "x"})
    with pytest.raises(TitanConfigError, match=r"^PipesTitanClient\.run, resources: unknown resource"):
        client._placement(None, None, None, {"vram": "8G"})


def worker(
    name: str,
    tags: tuple[str, ...] = (),
    slots: int = 2,
    cpus: int = 8,
    memory_gib: int = 32,
    gpus: tuple[str, ...] = (),
) -> WorkerRecord:
    return WorkerRecord(
        id=name,
        name=name,
        host="127.0.0.1",
        pid=1,
        tags=list(tags),
        slots=slots,
        running=0,
        cpu_percent=0.0,
        memory_percent=0.0,
        last_heartbeat=0.0,
        state="ALIVE",
        cpu_count=cpus,
        memory_bytes=memory_gib << 30,
        gpus=list(gpus),
        version="test",
        registered_at=0.0,
    )


WORKERS = [
    worker("cpu", slots=4, cpus=8, memory_gib=32),
    worker("gpu", tags=("GPU",), slots=2, cpus=4, memory_gib=16, gpus=("0",)),
]


@pytest.mark.parametrize(
    "placement",
    [
        Placement(),
        Placement(gpus=1),
        Placement(requirement=("GPU",), gpus=1, cpus=4, memory_mb=16 * GIB, slots=2),
        Placement(cpus=8, memory_mb=32 * GIB, slots=4),
        Placement(cpus=0.5),
    ],
)
def test_a_step_some_worker_could_hold_gets_no_warning(placement: Placement) -> None:
    assert why_unplaceable(placement, WORKERS) == ""


@pytest.mark.parametrize(
    ("placement", "expected"),
    [
        (
            Placement(gpus=2),
            "No connected Titan worker has at least 2 GPUs (the most any has: 1 GPU); the step waits "
            "in Titan's queue until one connects (a worker offers GPUs with `titan-runtime worker --gpus ...`).",
        ),
        (
            Placement(memory_mb=64 * GIB),
            "No connected Titan worker has at least 64 GiB of memory (the most any has: 32 GiB of memory)",
        ),
        (Placement(cpus=16), "No connected Titan worker has at least 16 CPUs (the most any has: 8 CPUs)"),
        (Placement(cpus=8.5), "has at least 8.5 CPUs (the most any has: 8 CPUs)"),
        (Placement(slots=5), "has at least 5 slots (the most any has: 4 slots)"),
        (
            Placement(requirement=("GPU",), cpus=8),
            "No connected Titan worker with tags ['GPU'] has at least 8 CPUs (the most any has: 4 CPUs)",
        ),
        (
            Placement(gpus=1, cpus=8),
            "No connected Titan worker has 8 CPUs, 1 GPU at once; the step waits in Titan's queue",
        ),
        (Placement(requirement=("TPU",), gpus=1), "No connected Titan worker has tags ['TPU']"),
    ],
)
def test_a_step_no_worker_could_hold_is_told_which_quantity_is_missing(
    placement: Placement, expected: str
) -> None:
    assert expected in why_unplaceable(placement, WORKERS)


def test_with_no_worker_connected_the_warning_says_so() -> None:
    assert why_unplaceable(Placement(gpus=1), []).startswith("No connected Titan worker has any tags")
