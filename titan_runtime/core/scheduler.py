"""Placement: which ready job goes to which worker.

Ready jobs wait in one priority queue per *requirement* (the tags they need and the worker they
are pinned to). A worker can serve every queue whose requirement it satisfies, so a job nobody
can take only ever blocks its own queue, never jobs that could run (the original Titan's
failure 4). Across queues the highest-priority head wins; within a queue, priority then arrival. A job goes
only where its slots and every quantity it asks for (CPUs, memory, GPUs) fit beside what runs there.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from titan_runtime.core.model import Worker
from titan_runtime.core.resources import NO_NEED, Need


@dataclass(frozen=True)
class Requirement:
    tags: frozenset[str] = frozenset()
    node: str = ""  # worker id or name; empty means any
    exclude: frozenset[str] = frozenset()  # worker ids it must not run on (where it already failed)
    #: CPUs, memory and GPUs beyond slots. Part of the queue's key: a job asking for a GPU that is
    #: busy waits in its own queue, and the jobs behind it that ask for less run meanwhile.
    need: Need = NO_NEED

    def admits(self, worker: Worker) -> bool:
        return (
            self.tags <= worker.tags
            and (not self.node or self.node in (worker.id, worker.name))
            and worker.id not in self.exclude
        )

    def describe(self) -> str:
        parts = []
        if self.tags:
            parts.append("tags {" + ", ".join(sorted(self.tags)) + "}")
        if self.node:
            parts.append(f"node {self.node}")
        if self.exclude:
            parts.append(f"not {', '.join(sorted(self.exclude))} (where it failed)")
        if self.need:
            parts.append(self.need.describe())
        return " and ".join(parts) or "no requirement"


class _Entry:
    """A queued job. Ordered by (-priority, arrival) alone: heaps compare entries a lot."""

    __slots__ = ("avoid", "key", "live", "prefer", "slots", "sort_key")

    def __init__(
        self, sort_key: tuple[int, int], key: tuple[str, str], slots: int, prefer: str, avoid: str
    ) -> None:
        self.sort_key = sort_key
        self.key = key
        self.slots = slots
        self.prefer = prefer  # worker id to prefer (soft affinity)
        self.avoid = avoid  # worker id to avoid when another is free (retry after loss or failure)
        self.live = True

    def __lt__(self, other: _Entry) -> bool:
        return self.sort_key < other.sort_key


class ReadyQueues:
    """The READY jobs, queued by requirement. Sans-IO: callers pass in the workers."""

    def __init__(self) -> None:
        self._queues: dict[Requirement, list[_Entry]] = {}
        self._entries: dict[tuple[str, str], tuple[Requirement, _Entry]] = {}
        self._seq = 0
        # Each queue's live sort keys in order, made when `position` is asked and kept until the
        # queues change: a listing of 10,000 queued jobs asks it 10,000 times in a row.
        self._changes = 0
        self._ordered: dict[Requirement, tuple[int, list[tuple[int, int]]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._entries

    def push(
        self,
        key: tuple[str, str],
        requirement: Requirement,
        priority: int,
        slots: int = 1,
        prefer: str = "",
        avoid: str = "",
        order: int | None = None,
    ) -> None:
        """Queue a job. `order` is its arrival rank (defaults to push order)."""
        self.remove(key)
        self._seq += 1
        entry = _Entry((-priority, self._seq if order is None else order), key, slots, prefer, avoid)
        heapq.heappush(self._queues.setdefault(requirement, []), entry)
        self._entries[key] = (requirement, entry)
        self._changes += 1

    def remove(self, key: tuple[str, str]) -> bool:
        found = self._entries.pop(key, None)
        if found is None:
            return False
        found[1].live = False  # dropped lazily from its heap
        self._changes += 1
        return True

    def requirement_of(self, key: tuple[str, str]) -> Requirement | None:
        found = self._entries.get(key)
        return found[0] if found else None

    def queued(self) -> list[tuple[str, str]]:
        return list(self._entries)

    def depth_by_tags(self) -> dict[frozenset[str], int]:
        """READY jobs queued, by the tags they need (what an overview or a metric shows)."""
        depth: dict[frozenset[str], int] = {}
        for requirement, _ in self._entries.values():
            depth[requirement.tags] = depth.get(requirement.tags, 0) + 1
        return depth

    def position(self, key: tuple[str, str]) -> int:
        """How many jobs are ahead of `key` in its own queue."""
        found = self._entries.get(key)
        if found is None:
            return 0
        requirement, entry = found
        cached = self._ordered.get(requirement)
        if cached is None or cached[0] != self._changes:
            keys = sorted(e.sort_key for e in self._queues[requirement] if e.live)
            cached = self._ordered[requirement] = (self._changes, keys)
        return bisect.bisect_left(cached[1], entry.sort_key)

    def _head(self, requirement: Requirement) -> _Entry | None:
        heap = self._queues.get(requirement)
        while heap and not heap[0].live:
            heapq.heappop(heap)
        if not heap:
            self._queues.pop(requirement, None)
            return None
        return heap[0]

    def place(
        self, workers: Iterable[Worker], avoid_for: Callable[[tuple[str, str]], set[str]] | None = None
    ) -> Iterator[tuple[tuple[str, str], Worker]]:
        """Yield (job key, worker) placements, best first.

        The caller must account for each placement (the worker's used slots) before asking for
        the next one: this generator re-reads the workers between yields. `avoid_for(key)` names
        workers to pass over when another eligible one has room (asked at the moment of placing).
        """
        pool = [w for w in workers if w.schedulable]
        if not pool:
            return
        candidates: list[tuple[tuple[int, int], int, Requirement]] = []
        for n, requirement in enumerate(list(self._queues)):
            head = self._head(requirement)
            if head is not None:
                candidates.append((head.sort_key, n, requirement))
        heapq.heapify(candidates)
        counter = len(candidates)
        while candidates:
            _, _, requirement = heapq.heappop(candidates)
            head = self._head(requirement)
            if head is None:
                continue
            need = requirement.need
            eligible = [
                w
                for w in pool
                if w.free_slots >= head.slots and requirement.admits(w) and (not need or w.fits(need))
            ]
            if not eligible:
                continue  # this queue is stuck for now; the others go on
            avoid = avoid_for(head.key) if avoid_for else {head.avoid} - {""}
            worker = self._choose(eligible, head, avoid, need)
            heapq.heappop(self._queues[requirement])
            del self._entries[head.key]
            yield head.key, worker
            nxt = self._head(requirement)
            if nxt is not None:
                counter += 1
                heapq.heappush(candidates, (nxt.sort_key, counter, requirement))

    @staticmethod
    def _choose(eligible: list[Worker], entry: _Entry, avoid: set[str], need: Need) -> Worker:
        if entry.prefer:
            for worker in eligible:
                if worker.id == entry.prefer:
                    return worker
        if avoid and len(eligible) > 1:
            others = [w for w in eligible if w.id not in avoid]
            if others:
                eligible = others
        if need:
            # Best fit: where it leaves the least of what it asks for, scarcest first, so that a
            # later job asking for a whole machine's GPUs (or memory) still finds one.
            return min(
                eligible,
                key=lambda w: (
                    len(w.gpus) - len(w.gpu_holders) if need.gpus else 0,
                    (w.memory_bytes >> 20) - w.used_memory_mb if need.memory_mb else 0,
                    w.cpu_count * 1000 - w.used_millicpus if need.millicpus else 0,
                    w.used_slots / max(w.slots, 1),
                    w.name,
                    w.id,
                ),
            )
        return min(eligible, key=lambda w: (w.used_slots / max(w.slots, 1), w.cpu_percent, w.name, w.id))
