"""What an autoscaled pool's new workers will offer, what waiting jobs need of them, and room on paper.

The autoscaler (core/autoscaler.py) places waiting jobs on paper before it starts anything: on the
free room of running workers, then of workers starting, then of workers it would start. Each of
those is a `Room` holding slots *and* quantities (CPUs, memory, GPUs), taken from the way the
scheduler will later place the jobs (core/scheduler.py: tags, free slots, `Worker.fits`), so that
a job the autoscaler counts as served is one the scheduler can place, and a pool is never grown
for a job its workers could not run.

A pool that does not declare a quantity does not know it: its workers will report what they detect
when they register, but until then the autoscaler cannot count on any of it. Such a pool never
grows for a job that asks for that quantity, and `PoolSpec.shortfall` says so (in the `unserved`
event and the pool's note) rather than starting workers that might not fit and starting more when
they do not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from titan_runtime.core.cluster import ClusterState
from titan_runtime.core.model import Worker
from titan_runtime.core.resources import NO_NEED, Need, format_cpus, format_memory

#: What one waiting job needs of a worker: its tags, its slots and its quantities.
Kind = tuple[frozenset[str], int, Need]

#: The tag a worker adds to its own when it has GPUs (worker/agent.py), so a pool's workers have it
#: too when the pool gives them devices.
GPU_TAG = "GPU"


def describe_tags(tags: frozenset[str]) -> str:
    return "tags {" + ", ".join(sorted(tags)) + "}" if tags else "no tags"


def _gpus(count: int) -> str:
    return f"{count} GPU{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class PoolSpec:
    """What the autoscaler needs to know about a pool (providers keep their own settings).

    `cpus`, `memory_mb` and `gpus` are what each of its workers will offer (the provider starts them
    with --cpus, --memory and --gpus); None when the pool does not declare it.
    """

    name: str
    provider: str = "local"
    tags: frozenset[str] = frozenset()
    slots: int = 1
    min: int = 0
    max: int = 1
    idle_timeout: float = 300.0  # seconds a worker may sit idle before it is descaled
    max_launching: int = 2  # workers of the pool starting (not yet registered) at once
    register_timeout: float = 120.0  # a launch not registered by then has failed
    backoff_initial: float = 5.0  # seconds before the next launch after a failed one, doubling
    backoff_max: float = 300.0
    drain_deadline: float = 60.0  # seconds a descaled worker's running jobs get (it is idle: rarely used)
    cpus: int | None = None  # CPUs each worker offers
    memory_mb: int | None = None  # memory each worker offers, MiB
    gpus: tuple[str, ...] | None = None  # the device ids each worker offers (its CUDA_VISIBLE_DEVICES)

    @property
    def worker_tags(self) -> frozenset[str]:
        """The tags its workers will register with: their own, and GPU when they are given devices."""
        return self.tags | {GPU_TAG} if self.gpus else self.tags

    def serves(self, tags: frozenset[str], slots: int, need: Need = NO_NEED) -> bool:
        return not self.shortfall(tags, slots, need)

    def shortfall(self, tags: frozenset[str], slots: int, need: Need = NO_NEED) -> str:
        """Why a new worker of this pool could never take such a job, or "" when it could.

        Names the first thing that does not fit, the scarcest first (the order placement uses)."""
        missing = tags - self.worker_tags
        if missing:
            return f"its workers lack {describe_tags(missing)}"
        if slots > self.slots:
            return f"its workers have {self.slots} slot(s), not {slots}"
        if need.gpus:
            if self.gpus is None:
                return "it does not declare gpus, so it cannot count on any"
            if len(self.gpus) < need.gpus:
                return f"its workers will have {_gpus(len(self.gpus))}, not {need.gpus}"
        if need.memory_mb:
            if self.memory_mb is None:
                return "it does not declare memory, so it cannot count on any"
            if self.memory_mb < need.memory_mb:
                return (
                    f"its workers will have {format_memory(self.memory_mb)} of memory, "
                    f"not {format_memory(need.memory_mb)}"
                )
        if need.millicpus:
            if self.cpus is None:
                return "it does not declare cpus, so it cannot count on any"
            if self.cpus * 1000 < need.millicpus:
                return f"its workers will have {self.cpus} CPU(s), not {format_cpus(need.millicpus)}"
        return ""

    def surplus(self, tags: frozenset[str], need: Need) -> tuple[int, int, int, int]:
        """What a new worker would have beyond such a job (tags, GPUs, memory, CPUs): the pool with
        the least is the closest fit, so a job that asks for little does not start a big machine.
        What the pool does not declare counts as nothing beyond."""
        return (
            len(self.worker_tags - tags),
            len(self.gpus) - need.gpus if self.gpus is not None else 0,
            self.memory_mb - need.memory_mb if self.memory_mb is not None else 0,
            self.cpus * 1000 - need.millicpus if self.cpus is not None else 0,
        )

    def backoff(self, failures: int) -> float:
        return min(self.backoff_max, self.backoff_initial * 2 ** max(0, failures - 1))


@dataclass(frozen=True)
class Demand:
    """Jobs waiting to be placed: `count` jobs needing `tags`, `slots` and `need` (CPUs, memory,
    GPUs) each."""

    tags: frozenset[str]
    slots: int = 1
    count: int = 1
    need: Need = NO_NEED

    @property
    def kind(self) -> Kind:
        """What one such job needs, whatever their number."""
        return (self.tags, self.slots, self.need)

    def describe(self) -> str:
        return describe_kind(self.kind)


def describe_kind(kind: Kind) -> str:
    tags, slots, need = kind
    text = describe_tags(tags)
    if slots > 1:
        text += f" and {slots} slots"
    if need:
        text += f" and {need.describe()}"
    return text


def pending_demand(state: ClusterState) -> list[Demand]:
    """The queued jobs a new worker could take, grouped by what they need, in the queues' order.

    Jobs pinned to one worker (node or hard affinity) are left out: no new worker can take them.
    """
    counts: Counter[Kind] = Counter()
    for key in state.queues.queued():
        requirement = state.queues.requirement_of(key)
        if requirement is None or requirement.node:
            continue
        job = state.runs[key[0]].jobs[key[1]]
        counts[(requirement.tags, max(1, job.spec.slots), requirement.need)] += 1
    return [Demand(tags, slots, n, need) for (tags, slots, need), n in counts.items()]


@dataclass
class Room:
    """Free room on paper: of a running worker, of one starting, or of one the plan would start.
    Quantities a pool does not declare are 0 here: a job that asks for them never fits."""

    tags: frozenset[str]
    slots: int
    millicpus: int = 0
    memory_mb: int = 0
    gpus: int = 0
    pool: str = ""  # a worker the plan would start

    @classmethod
    def of_worker(cls, worker: Worker) -> Room:
        """What the scheduler could still place on it now (mirrors `Worker.fits`)."""
        return cls(
            worker.tags,
            worker.free_slots,
            worker.cpu_count * 1000 - worker.used_millicpus,
            (worker.memory_bytes >> 20) - worker.used_memory_mb,
            len(worker.gpus) - len(worker.gpu_holders),
        )

    @classmethod
    def of_pool(cls, spec: PoolSpec, planned: bool = False) -> Room:
        """A new worker of `spec`, idle."""
        return cls(
            spec.worker_tags,
            spec.slots,
            (spec.cpus or 0) * 1000,
            spec.memory_mb or 0,
            len(spec.gpus or ()),
            spec.name if planned else "",
        )

    def take(self, demand: Demand) -> bool:
        """Room for one such job: take it and say True, or leave it and say False. Only what the
        job asks for is compared, as the scheduler does (a job asking nothing fits an overfull one)."""
        need = demand.need
        if (
            demand.slots > self.slots
            or not demand.tags <= self.tags
            or (need.millicpus and need.millicpus > self.millicpus)
            or (need.memory_mb and need.memory_mb > self.memory_mb)
            or (need.gpus and need.gpus > self.gpus)
        ):
            return False
        self.slots -= demand.slots
        self.millicpus -= need.millicpus
        self.memory_mb -= need.memory_mb
        self.gpus -= need.gpus
        return True


def take_room(rooms: list[Room], demand: Demand) -> Room | None:
    """Take room for one job from the first room it fits in."""
    for room in rooms:
        if room.take(demand):
            return room
    return None
