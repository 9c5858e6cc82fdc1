"""Autoscaling decisions: how many workers each pool should have, and which to start or descale.

Sans-IO like the rest of `core`: the master passes in the time, its workers and the jobs waiting
to be placed (`pending_demand`), and gets back actions (`Launch`, `Drain`, `Retire`) that it
carries out through the pools' providers. Every decision is recorded as a `ScaleEvent` with its
reason, so `titan-runtime autoscaler events` can say why the cluster grew or shrank.

Demand is counted by what jobs need (tags, slots, CPUs, memory, GPUs: core/pools.py): a waiting job
is placed on paper on the room left on running workers, then on workers starting, then on new
workers of the closest pool whose workers will have all of it; a pool never grows for a job its
workers could not run, and the reason names what does not fit.

What it guarantees:
- a pool never has more than `max` workers (launching, running or draining) nor, once it could
  start them, fewer than `min`;
- at most `max_launching` of a pool's workers are starting at once (the scale-up rate is bounded);
- a launch that has not registered within `register_timeout` counts as failed: it is retired
  (its process stopped) and the pool backs off exponentially before trying again, instead of
  spawning workers forever (the original Titan's failure 15);
- a worker idle for `idle_timeout` is descaled through a graceful drain, never below `min`; a
  descaled worker that comes back is drained again (the original's failure 7).
"""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from titan_runtime.core.model import Worker, WorkerState
from titan_runtime.core.pools import (
    Demand,
    Kind,
    PoolSpec,
    Room,
    describe_kind,
    describe_tags,
    pending_demand,
    take_room,
)

__all__ = [
    "Action",
    "Autoscaler",
    "Demand",
    "Drain",
    "Launch",
    "PoolSpec",
    "PoolStatus",
    "Retire",
    "ScaleEvent",
    "pending_demand",
]


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Launch:
    """Start one worker for `pool`; it registers with `launch_id` (its name too)."""

    pool: str
    launch_id: str
    reason: str


@dataclass(frozen=True)
class Drain:
    """Descale a registered worker: no new work, finish what runs, exit."""

    pool: str
    launch_id: str
    worker_id: str
    reason: str


@dataclass(frozen=True)
class Retire:
    """The launch is over: clean up after it. `force`: its process may still run and must be stopped
    (it never registered, or its worker was lost); otherwise the worker drained and left by itself."""

    pool: str
    launch_id: str
    reason: str
    force: bool


Action = Launch | Drain | Retire


@dataclass(frozen=True)
class ScaleEvent:
    at: float
    pool: str
    kind: str  # launch registered launch_failed backoff drain left lost adopted returned unserved
    message: str
    launch_id: str = ""
    worker: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScaleEvent:
        return cls(
            **{k: data[k] for k in ("at", "pool", "kind", "message", "launch_id", "worker") if k in data}
        )


# ---------------------------------------------------------------- state


LAUNCHING, REGISTERED, DRAINING = "launching", "registered", "draining"


@dataclass
class _Launch:
    id: str
    pool: str
    started_at: float
    state: str = LAUNCHING
    worker_id: str = ""
    worker_name: str = ""
    drain_started: float = 0.0


@dataclass
class _Pool:
    spec: PoolSpec
    failures: int = 0  # consecutive failed launches
    backoff_until: float = 0.0
    waiting: int = 0  # jobs the last step wanted this pool to take
    note: str = ""  # why it cannot grow, when it cannot


@dataclass
class PoolStatus:
    spec: PoolSpec
    workers: int
    launching: int
    draining: int
    waiting: int
    failures: int
    backoff_until: float
    note: str


@dataclass
class _Plan:
    launches: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, Counter[Kind]] = field(default_factory=dict)
    unserved: Counter[Kind] = field(default_factory=Counter)


class Autoscaler:
    """Pools, their launches, and the decisions about them. Feed it with `step` on a timer."""

    def __init__(
        self,
        pools: Sequence[PoolSpec],
        new_id: Callable[[str], str] | None = None,
        max_events: int = 1000,
        retired_memory: int = 10000,
    ) -> None:
        names = [p.name for p in pools]
        if len(set(names)) != len(names):
            raise ValueError("pool names must be unique")
        self.pools: dict[str, _Pool] = {p.name: _Pool(p) for p in pools}
        counter = itertools.count(1)
        self._new_id = new_id or (lambda pool: f"{pool}-{next(counter)}")
        self.launches: dict[str, _Launch] = {}
        self.events: deque[ScaleEvent] = deque(maxlen=max_events)
        self._retired: dict[str, None] = {}  # launch ids already over, oldest first (bounded)
        self._retired_memory = retired_memory
        self._idle_since: dict[str, float] = {}
        self._unserved: dict[Kind, str] = {}  # what waiting jobs need that no pool gives, and why
        self.event_count = 0  # how many events were ever recorded (to know when to persist)

    # ------------------------------------------------------------------ queries

    def status(self) -> list[PoolStatus]:
        out = []
        for pool in self.pools.values():
            mine = [la for la in self.launches.values() if la.pool == pool.spec.name]
            out.append(
                PoolStatus(
                    spec=pool.spec,
                    workers=sum(1 for la in mine if la.state == REGISTERED),
                    launching=sum(1 for la in mine if la.state == LAUNCHING),
                    draining=sum(1 for la in mine if la.state == DRAINING),
                    waiting=pool.waiting,
                    failures=pool.failures,
                    backoff_until=pool.backoff_until,
                    note=pool.note,
                )
            )
        return out

    @property
    def unserved(self) -> list[frozenset[str]]:
        """Tag sets of jobs waiting for what no pool gives (tags, slots or a quantity)."""
        return sorted({tags for tags, _, _ in self._unserved}, key=sorted)

    @property
    def unserved_reasons(self) -> list[str]:
        """For each kind of job no pool can take, why (the pools' shortfalls)."""
        return list(self._unserved.values())

    def restore_events(self, events: Iterable[ScaleEvent]) -> None:
        for event in events:
            self.events.append(event)

    # ------------------------------------------------------------------ events from providers

    def launch_failed(self, launch_id: str, now: float, error: str) -> list[Action]:
        """The provider could not start it, or its process ended before it registered."""
        launch = self.launches.get(launch_id)
        if launch is None or launch.state != LAUNCHING:
            return []
        return self._fail(launch, now, error)

    def process_exited(self, launch_id: str, now: float, detail: str) -> list[Action]:
        """The provider saw the worker's process end."""
        launch = self.launches.get(launch_id)
        if launch is None:
            return []
        if launch.state == LAUNCHING:
            return self._fail(launch, now, f"exited before registering: {detail}")
        if launch.state == DRAINING:
            how = detail.split(";", 1)[0]  # how it ended; its log's tail says nothing for a drained worker
            self._record(
                now, launch.pool, "left", f"descaled worker {launch.worker_name} left ({how})", launch
            )
            return [self._retire(launch, "drained and exited", force=False)]
        self._record(now, launch.pool, "lost", f"worker exited unexpectedly ({detail})", launch)
        return [self._retire(launch, f"exited unexpectedly ({detail})", force=True)]

    # ------------------------------------------------------------------ the step

    def step(self, now: float, workers: Iterable[Worker], demand: Sequence[Demand]) -> list[Action]:
        """Look at the cluster as it is now and decide. Call it on a timer."""
        workers = list(workers)
        actions: list[Action] = []
        actions += self._track_registrations(now, workers)
        actions += self._track_workers(now, workers)
        plan = self._plan(now, workers, demand)
        actions += self._launch(now, plan)
        actions += self._descale(now, workers, plan)
        return actions

    def _track_registrations(self, now: float, workers: list[Worker]) -> list[Action]:
        actions: list[Action] = []
        by_launch = {w.launch_id: w for w in workers if w.launch_id and not w.state.gone}
        for launch in list(self.launches.values()):
            if launch.state != LAUNCHING:
                continue
            worker = by_launch.get(launch.id)
            pool = self.pools[launch.pool]
            if worker is not None:
                launch.state = REGISTERED
                launch.worker_id, launch.worker_name = worker.id, worker.name
                pool.failures = 0
                self._record(
                    now,
                    launch.pool,
                    "registered",
                    f"worker {worker.name} registered {now - launch.started_at:.1f}s after its launch",
                    launch,
                )
            elif now - launch.started_at > pool.spec.register_timeout:
                actions += self._fail(
                    launch,
                    now,
                    f"did not register within {pool.spec.register_timeout:g}s (register_timeout); stopped it",
                )
        # Workers of our pools we did not launch (started before this master, or by hand): adopt them.
        for worker in workers:
            if worker.pool not in self.pools or worker.state.gone or worker.state is WorkerState.UNKNOWN:
                continue
            launch_id = worker.launch_id or worker.id
            if launch_id in self.launches:
                continue
            if launch_id in self._retired:
                if worker.state is WorkerState.ALIVE:
                    launch = _Launch(launch_id, worker.pool, now, DRAINING, worker.id, worker.name, now)
                    self.launches[launch_id] = launch
                    self._record(
                        now,
                        worker.pool,
                        "returned",
                        f"descaled worker {worker.name} came back; draining it",
                        launch,
                    )
                    actions.append(Drain(worker.pool, launch_id, worker.id, "descaled earlier; it came back"))
                continue
            state = DRAINING if worker.state is WorkerState.DRAINING else REGISTERED
            launch = _Launch(launch_id, worker.pool, now, state, worker.id, worker.name, now)
            self.launches[launch_id] = launch
            self._record(
                now, worker.pool, "adopted", f"adopted worker {worker.name} of pool {worker.pool}", launch
            )
        return actions

    def _track_workers(self, now: float, workers: list[Worker]) -> list[Action]:
        """Registered workers that are gone, and drains that take too long."""
        actions: list[Action] = []
        by_id = {w.id: w for w in workers}
        for launch in list(self.launches.values()):
            if launch.state == LAUNCHING:
                continue
            worker = by_id.get(launch.worker_id)
            spec = self.pools[launch.pool].spec
            if worker is None or worker.state.gone:
                if launch.state == DRAINING and worker is not None and worker.state is WorkerState.LEFT:
                    self._record(
                        now, launch.pool, "left", f"descaled worker {launch.worker_name} left", launch
                    )
                    actions.append(self._retire(launch, "drained and left", force=False))
                else:
                    how = "was declared dead" if worker is not None else "is unknown to the master"
                    self._record(now, launch.pool, "lost", f"worker {launch.worker_name} {how}", launch)
                    actions.append(self._retire(launch, f"worker {how}", force=True))
                continue
            if worker.state is WorkerState.DRAINING and launch.state == REGISTERED:
                launch.state, launch.drain_started = DRAINING, now  # drained by someone else
            if launch.state == DRAINING and now - launch.drain_started > spec.drain_deadline + 30.0:
                self._record(
                    now,
                    launch.pool,
                    "lost",
                    f"worker {launch.worker_name} did not exit within {spec.drain_deadline + 30:g}s of its drain; stopping it",
                    launch,
                )
                actions.append(self._retire(launch, "drain overran its deadline", force=True))
        return actions

    def _plan(self, now: float, workers: list[Worker], demand: Sequence[Demand]) -> _Plan:
        """Place the waiting jobs on the room of running workers, then of starting ones, then of
        new ones, by slots and by every quantity they ask for."""
        plan = _Plan()
        existing = [Room.of_worker(w) for w in workers if w.schedulable and w.free_slots > 0]
        starting = [
            Room.of_pool(self.pools[la.pool].spec) for la in self.launches.values() if la.state == LAUNCHING
        ]
        planned: list[Room] = []
        for pool in self.pools.values():
            pool.waiting = 0
            pool.note = ""
        for group in demand:
            serving = self._serving(group)
            for placed in range(group.count):
                if take_room(existing, group) or take_room(starting, group):
                    continue
                room = take_room(planned, group)
                if room:
                    pool = self.pools[room.pool]
                else:
                    if not serving:
                        plan.unserved[group.kind] += group.count - placed
                        break
                    chosen = self._choose_pool(now, serving, plan)
                    if chosen is None:
                        break  # no room appears within one plan: the rest of these wait too
                    pool = chosen
                    plan.launches[pool.spec.name] += 1
                    room = Room.of_pool(pool.spec, planned=True)
                    room.take(group)
                    planned.append(room)
                pool.waiting += 1
                plan.reasons.setdefault(pool.spec.name, Counter())[group.kind] += 1
        self._report_unserved(now, plan.unserved)
        return plan

    def _serving(self, group: Demand) -> list[_Pool]:
        """The pools whose new workers could take such jobs, the closest fit first."""
        serving = [p for p in self.pools.values() if p.spec.serves(*group.kind)]
        serving.sort(key=lambda p: (p.spec.surplus(group.tags, group.need), p.spec.name))
        return serving

    def _report_unserved(self, now: float, unserved: Counter[Kind]) -> None:
        """Say once (an event) what jobs wait for that no pool gives and why, and tell each pool whose
        tags would do (its note) what it lacks."""
        reasons: dict[Kind, str] = {}
        for kind, count in unserved.items():
            tags = kind[0]
            near = [p for p in self.pools.values() if tags <= p.spec.worker_tags]
            if not near:
                reasons[kind] = f"jobs wait for {describe_tags(tags)}, which no pool serves"
                continue
            why = []
            for pool in near:
                lacks = pool.spec.shortfall(*kind)
                why.append(f"pool {pool.spec.name}: {lacks}")
                self._note(pool, f"cannot take the {count} job(s) needing {describe_kind(kind)}: {lacks}")
            reasons[kind] = (
                f"{count} job(s) need {describe_kind(kind)}, which no pool gives ({'; '.join(why)})"
            )
        for kind in reasons.keys() - self._unserved.keys():
            self._record(now, "", "unserved", reasons[kind])
        self._unserved = reasons

    @staticmethod
    def _note(pool: _Pool, text: str) -> None:
        pool.note = f"{pool.note}; {text}" if pool.note else text

    def _size(self, pool: str, states: tuple[str, ...] = (LAUNCHING, REGISTERED, DRAINING)) -> int:
        return sum(1 for la in self.launches.values() if la.pool == pool and la.state in states)

    def _room(self, now: float, pool: _Pool, planned: int) -> str:
        """Why the pool cannot start one more worker now, or "" when it can."""
        spec = pool.spec
        if now < pool.backoff_until:
            return f"backing off until {pool.backoff_until - now:.0f}s from now after {pool.failures} failed launch(es)"
        if self._size(spec.name) + planned >= spec.max:
            return f"at its max of {spec.max} worker(s)"
        if self._size(spec.name, (LAUNCHING,)) + planned >= spec.max_launching:
            return f"{spec.max_launching} worker(s) already starting (max_launching)"
        return ""

    def _choose_pool(self, now: float, serving: list[_Pool], plan: _Plan) -> _Pool | None:
        """The first of `serving` that may start one more worker now; the others' notes say why not."""
        for pool in serving:
            why = self._room(now, pool, plan.launches[pool.spec.name])
            if not why:
                return pool
            if why not in pool.note:
                self._note(pool, why)
        return None

    def _launch(self, now: float, plan: _Plan) -> list[Action]:
        actions: list[Action] = []
        for pool in self.pools.values():
            spec = pool.spec
            count = plan.launches[spec.name]
            reasons = plan.reasons.get(spec.name, Counter())
            described = "; ".join(f"{n} job(s) need {describe_kind(kind)}" for kind, n in reasons.items())
            reason = f"{described}; no worker has room" if count else ""
            active = self._size(spec.name, (LAUNCHING, REGISTERED))
            below = spec.min - active - count
            if below > 0:
                why_not = ""
                extra = 0
                while extra < below:
                    why_not = self._room(now, pool, count + extra)
                    if why_not:
                        break
                    extra += 1
                if extra:
                    count += extra
                    reason = (reason + "; " if reason else "") + f"the pool is below its min of {spec.min}"
                elif why_not:
                    self._note(pool, f"below its min of {spec.min} but {why_not}")
            for _ in range(count):
                launch_id = self._new_id(spec.name)
                self.launches[launch_id] = _Launch(launch_id, spec.name, now)
                self._record(
                    now, spec.name, "launch", f"starting a worker: {reason}", self.launches[launch_id]
                )
                actions.append(Launch(spec.name, launch_id, reason))
        return actions

    def _descale(self, now: float, workers: list[Worker], plan: _Plan) -> list[Action]:
        actions: list[Action] = []
        by_id = {w.id: w for w in workers}
        seen: set[str] = set()
        for launch in self.launches.values():
            if launch.state != REGISTERED:
                continue
            worker = by_id.get(launch.worker_id)
            if worker is None:
                continue
            seen.add(worker.id)
            if worker.state is WorkerState.ALIVE and not worker.attempts:
                self._idle_since.setdefault(worker.id, now)
            else:
                self._idle_since.pop(worker.id, None)
        for worker_id in [w for w in self._idle_since if w not in seen]:
            del self._idle_since[worker_id]
        for pool in self.pools.values():
            spec = pool.spec
            if plan.launches[spec.name]:
                continue  # it is growing: none of its workers is surplus
            idle = sorted(
                (
                    (self._idle_since[la.worker_id], la)
                    for la in self.launches.values()
                    if la.pool == spec.name and la.state == REGISTERED and la.worker_id in self._idle_since
                ),
                key=lambda item: item[0],
            )
            active = self._size(spec.name, (LAUNCHING, REGISTERED))
            for since, launch in idle:
                if active <= spec.min or now - since < spec.idle_timeout:
                    break
                launch.state, launch.drain_started = DRAINING, now
                del self._idle_since[launch.worker_id]
                active -= 1
                reason = f"idle for {now - since:.0f}s (idle_timeout {spec.idle_timeout:g}s)"
                self._record(
                    now, spec.name, "drain", f"descaling worker {launch.worker_name}: {reason}", launch
                )
                actions.append(Drain(spec.name, launch.id, launch.worker_id, f"descaled: {reason}"))
        return actions

    # ------------------------------------------------------------------ helpers

    def _fail(self, launch: _Launch, now: float, error: str) -> list[Action]:
        pool = self.pools[launch.pool]
        pool.failures += 1
        wait = pool.spec.backoff(pool.failures)
        pool.backoff_until = now + wait
        self._record(now, launch.pool, "launch_failed", f"launch {launch.id} failed: {error}", launch)
        self._record(
            now,
            launch.pool,
            "backoff",
            f"no new launch for {wait:g}s after {pool.failures} failed launch(es) in a row",
        )
        return [self._retire(launch, error, force=True)]

    def _retire(self, launch: _Launch, reason: str, force: bool) -> Retire:
        self.launches.pop(launch.id, None)
        self._idle_since.pop(launch.worker_id, None)
        self._retired[launch.id] = None
        while len(self._retired) > self._retired_memory:
            del self._retired[next(iter(self._retired))]
        return Retire(launch.pool, launch.id, reason, force)

    def _record(self, now: float, pool: str, kind: str, message: str, launch: _Launch | None = None) -> None:
        self.events.append(
            ScaleEvent(
                now,
                pool,
                kind,
                message,
                launch.id if launch else "",
                launch.worker_name if launch else "",
            )
        )
        self.event_count += 1
