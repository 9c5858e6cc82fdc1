"""The cluster's workers: joining (and what they held when they did), leaving, draining, dying,
heartbeats, their reports of attempts starting and becoming healthy, and why a queued job has no
worker yet. A part of ClusterState (core/cluster.py), sharing its state: events in, effects out,
no I/O."""

from __future__ import annotations

from titan_runtime.core.common import ClusterPart, NotFound, reported_ports
from titan_runtime.core.effects import (
    AckFinished,
    CancelAttempt,
    DrainWorker,
    Note,
    Welcome,
    WorkerHello,
)
from titan_runtime.core.model import (
    AttemptState,
    Job,
    JobState,
    Worker,
    WorkerState,
)
from titan_runtime.core.resources import format_memory


class WorkersMixin(ClusterPart):
    def worker_connected(self, hello: WorkerHello, now: float) -> Welcome:
        worker = self.workers.get(hello.worker_id)
        if worker is None:
            worker = Worker(id=hello.worker_id, name=hello.name, registered_at=now)
            self.workers[worker.id] = worker
        elif worker.state is WorkerState.DEAD:
            self._effects.append(
                Note(f"worker {worker.name} ({worker.id}) came back after being declared dead")
            )
        elif worker.state is WorkerState.LEFT:
            self._effects.append(Note(f"worker {worker.name} ({worker.id}) came back after leaving"))
        worker.name = hello.name

        worker.host = hello.host
        worker.pid = hello.pid
        worker.tags = hello.tags
        worker.slots = max(1, hello.slots)
        worker.cpu_count = hello.cpu_count
        worker.memory_bytes = hello.memory_bytes
        worker.gpus = hello.gpus
        worker.memory_enforcement = hello.memory_enforcement
        worker.version = hello.version
        worker.pool, worker.provider, worker.launch_id = hello.pool, hello.provider, hello.launch_id
        worker.state = WorkerState.DRAINING if hello.draining else WorkerState.ALIVE
        worker.last_heartbeat = now
        self._dirty_workers.add(worker.id)

        superseded: list[str] = []
        adopted: dict[str, int] = {}
        held_ids = set()
        for held in hello.held:
            held_ids.add(held.attempt_id)
            found = self._attempts.get(held.attempt_id)
            if found is None:
                superseded.append(held.attempt_id)
                self._effects.append(
                    Note(f"worker {worker.name} holds unknown attempt {held.attempt_id}: superseded")
                )
                continue
            job, attempt = found
            if attempt.worker_id != worker.id:
                # Never this worker's: a claim on another worker's attempt changes nothing of it.
                superseded.append(held.attempt_id)
                self._effects.append(
                    Note(f"worker {worker.name} holds attempt {attempt.id} of another worker: superseded")
                )
                continue
            current = not attempt.state.terminal and not job.state.terminal and job.current is attempt
            if not current:
                superseded.append(held.attempt_id)
                if not attempt.state.terminal:
                    # The job ended without it (cancelled while the worker was away).
                    self._close_attempt(
                        job, attempt, AttemptState.CANCELLED, now, reason=job.reason or "cancelled"
                    )
                self._effects.append(
                    Note(
                        f"attempt {attempt.id} of {job.ref} on worker {worker.name} is superseded; telling it to stop"
                    )
                )
                continue
            adopted[attempt.id] = held.log_size
            if attempt.id not in worker.attempts:
                worker.hold(attempt, job.spec.slots, job.spec.need)
            if held.exit is not None:
                self._finish(job, attempt, held.exit, now)
                self._effects.append(AckFinished(worker.id, attempt.id))
            else:
                # The worker is the authority on what it runs: its ports and health may not have been
                # committed before the master went down.
                attempt.host = held.host or attempt.host
                attempt.ports = reported_ports(job.spec, held.ports) or attempt.ports
                attempt.healthy = attempt.healthy or held.healthy
                self._mark_running(job, attempt, held.pid, held.started_at or now, now)

        # What we believe this worker holds but it does not: never received, or lost with a restart.
        for attempt_id in list(worker.attempts):
            if attempt_id in held_ids:
                continue
            job, attempt = self._attempts[attempt_id]
            if attempt.state is AttemptState.ASSIGNED:
                self._requeue_unstarted(job, attempt, now, f"worker {worker.name} never received it")
            else:
                self._lose(job, attempt, now, f"worker {worker.name} restarted without it")
        self._dispatch_needed = True
        self._settle(now)
        return Welcome(superseded=tuple(superseded), log_offsets=adopted)

    def worker_disconnected(self, worker_id: str, now: float, reason: str) -> None:
        """The worker's stream ended without a goodbye, or its lease ran out: it is dead."""
        self._worker_gone(worker_id, now, reason, WorkerState.DEAD)

    def worker_left(self, worker_id: str, now: float) -> None:
        """The worker said it was leaving (drained or stopped) before its stream ended."""
        self._worker_gone(worker_id, now, "left", WorkerState.LEFT)

    def request_drain(
        self, worker_id: str, deadline: float, now: float, reason: str = "drain requested"
    ) -> None:
        worker = self.workers.get(worker_id)
        if worker is None or worker.state.gone:
            raise NotFound(f"no live worker {worker_id!r}")
        self.set_draining(worker_id, now)
        self._effects.append(DrainWorker(worker_id, deadline, reason))

    def find_worker(self, name_or_id: str) -> Worker:
        """A live worker by id, or by name when exactly one live worker has it."""
        worker = self.workers.get(name_or_id)
        if worker is not None and not worker.state.gone:
            return worker
        named = [w for w in self.workers.values() if w.name == name_or_id and not w.state.gone]
        if len(named) == 1:
            return named[0]
        if named:
            raise NotFound(
                f"{len(named)} live workers are named {name_or_id!r}; use its id (titan-runtime workers)"
            )
        raise NotFound(f"no live worker {name_or_id!r}: list them with `titan-runtime workers`")

    def _worker_gone(self, worker_id: str, now: float, reason: str, state: WorkerState) -> None:
        worker = self.workers.get(worker_id)
        if worker is None or worker.state.gone:
            return
        worker.state = state
        worker.last_heartbeat = now
        self._dirty_workers.add(worker_id)
        if state is WorkerState.DEAD:
            self._effects.append(Note(f"worker {worker.name} ({worker_id}) declared dead: {reason}"))
        else:
            self._effects.append(Note(f"worker {worker.name} ({worker_id}) left"))
        for attempt_id in sorted(worker.attempts):
            job, attempt = self._attempts[attempt_id]
            if state is WorkerState.LEFT and attempt.state is AttemptState.ASSIGNED:
                # It handed back all it had started before leaving: this one it never received.
                self._requeue_unstarted(job, attempt, now, f"worker {worker.name} left before starting it")
            else:
                self._lose(
                    job, attempt, now, f"worker {worker.name} {reason}", counted=state is WorkerState.DEAD
                )
        # Jobs pinned to it by hard affinity can never run now.
        for key in self.queues.queued():
            requirement = self.queues.requirement_of(key)
            if requirement is not None and requirement.node == worker_id:
                job = self.runs[key[0]].jobs[key[1]]
                if job.spec.affinity == "hard":
                    self._fail(job, now, f"affinity: worker {worker.name} that ran its parent is gone")
        self._settle(now)

    def set_draining(self, worker_id: str, now: float) -> None:
        worker = self.workers.get(worker_id)
        if worker is not None and worker.state is WorkerState.ALIVE:
            worker.state = WorkerState.DRAINING
            self._dirty_workers.add(worker_id)

    def heartbeat(
        self, worker_id: str, now: float, cpu_percent: float = 0.0, memory_percent: float = 0.0
    ) -> None:
        worker = self.workers.get(worker_id)
        if worker is None or worker.state.gone:
            return
        worker.last_heartbeat = now
        worker.cpu_percent = cpu_percent
        worker.memory_percent = memory_percent

    def attempt_started(
        self,
        worker_id: str,
        attempt_id: str,
        pid: int,
        started_at: float,
        now: float,
        host: str = "",
        ports: dict[str, int] | None = None,
    ) -> None:
        found = self._attempts.get(attempt_id)
        if found is None or found[1].worker_id != worker_id:
            self._effects.append(
                Note(f"rejected start report for unknown attempt {attempt_id} from {worker_id}")
            )
            self._effects.append(CancelAttempt(worker_id, attempt_id, "unknown attempt"))
            return
        job, attempt = found
        if attempt.state.terminal:
            self._effects.append(
                Note(f"rejected start report for attempt {attempt_id}: it is {attempt.state.value}")
            )
            self._effects.append(CancelAttempt(worker_id, attempt_id, f"superseded ({attempt.state.value})"))
            return
        attempt.host, attempt.ports = host, reported_ports(job.spec, ports or {})
        self._mark_running(job, attempt, pid, started_at or now, now)
        self._settle(now)

    def attempt_healthy(self, worker_id: str, attempt_id: str, now: float) -> None:
        """A service's health check passed for the first time in this attempt."""
        found = self._attempts.get(attempt_id)
        if found is None or found[1].worker_id != worker_id or found[1].state.terminal:
            return
        job, attempt = found
        attempt.healthy = True
        self._dirty_attempts.add(attempt.id)
        if job.current is attempt and job.state is JobState.STARTING:
            self._became_healthy(job, now)
        self._settle(now)

    # ------------------------------------------------------------------ placement

    def waiting_reason(self, job: Job) -> str:
        """Why a READY job has not started yet, in words."""
        if self.queues.requirement_of(job.key) is None:
            return job.reason
        unplaceable = self._unplaceable(job)
        if unplaceable:
            return unplaceable
        ahead = self.queues.position(job.key)
        need = job.spec.need
        what = f"free resources ({job.spec.slots} slot(s), {need.describe()})" if need else "a free slot"
        return f"waiting for {what} ({ahead} queued ahead)" if ahead else f"waiting for {what}"

    def _unplaceable(self, job: Job) -> str:
        """Why no connected worker could run a queued job now ("waiting for a worker with tags
        {GPU}"), or "" when one could (it waits for a free slot)."""
        requirement = self.queues.requirement_of(job.key)
        if requirement is None:
            return ""
        live = [w for w in self.workers.values() if w.schedulable]
        if not any(requirement.admits(w) for w in live):
            if requirement.node:
                name = (
                    self.workers[requirement.node].name
                    if requirement.node in self.workers
                    else requirement.node
                )
                return f"waiting for worker {name}"
            return f"waiting for a worker with {requirement.describe()}"
        need = requirement.need
        if not any(
            requirement.admits(w) and w.slots >= job.spec.slots and w.could_ever_fit(need) for w in live
        ):
            if need:
                largest = max((w for w in live if requirement.admits(w)), key=lambda w: w.slots)
                return (
                    f"waiting for a worker with {job.spec.slots} slot(s) and {requirement.describe()} "
                    f"(the largest that could: {largest.name}, {_offer(largest)})"
                )
            return f"waiting for a worker with {job.spec.slots} slots and {requirement.describe()}"
        return ""


def _offer(worker: Worker) -> str:
    return (
        f"{worker.slots} slots, {worker.cpu_count} CPUs, {format_memory(worker.memory_bytes >> 20)}, "
        f"{len(worker.gpus)} GPUs"
    )
