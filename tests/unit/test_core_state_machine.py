"""The control plane driven at random: submissions (with retries, delays, approval gates and
services), workers joining, dying and reconnecting, attempts starting and ending, cancels, time
passing and master restarts, with the invariants checked after every step:

- every change of a job's state is in JOB_TRANSITIONS (the state is strict: one outside raises);
- a run's count of unfinished jobs is the number of its jobs that have not ended;
- a job has at most one attempt out, and the attempt it waits on is its latest;
- what was persisted, restored into a new state, equals the live state;
- a run leaves memory only once it has ended, and the store then gives it back as it was.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from titan_runtime.core.cluster import ClusterConfig, ClusterState
from titan_runtime.core.effects import Assign, AttemptExit, WorkerHello
from titan_runtime.core.model import ApprovalGate, JobSpec, RetryPolicy, Run, RunState
from titan_runtime.master.history import build_run
from titan_runtime.store import MemoryStore

WORKERS = ("w1", "w2")
LEASE = 10.0


def spec(job_id: str, parents: tuple[str, ...], flavour: str) -> JobSpec:
    extra: dict = {}
    if flavour == "retry":
        extra["retries"] = RetryPolicy(attempts=2, backoff_initial=1.0)
    elif flavour == "delay":
        extra["delay"] = 2.0
    elif flavour == "gate":
        extra["approval"] = ApprovalGate(required=True, message="ok?", timeout=30.0)
    elif flavour == "upstream":
        extra["trigger_rule"] = "all_done"
    return JobSpec(id=job_id, command=("true",), parents=parents, **extra)


def run_snapshot(run: Run) -> tuple:
    return (
        run.state.value,
        {job.id: (job.state.value, tuple(a.state.value for a in job.attempts)) for job in run.jobs.values()},
    )


def snapshot(state: ClusterState) -> dict:
    """What a restart must give back: each running run's state, its jobs' and their attempts' states
    (a run that has ended is read from the store, not restored)."""
    return {run.id: run_snapshot(run) for run in state.runs.values() if run.state is RunState.RUNNING}


class ControlPlane(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.now = 1000.0
        self.store = MemoryStore()
        ids = itertools.count(1)
        self.new_id = lambda: f"a{next(ids)}"  # unique across restarts, as the master's are
        self.state = self.new_state()
        self.out: dict[str, Assign] = {}  # attempts assigned and not known to have ended
        self.connected: set[str] = set()
        self.runs = 0

    def new_state(self) -> ClusterState:
        return ClusterState(ClusterConfig(lease_timeout=LEASE), new_id=self.new_id, jitter=lambda: 0.5)

    def settle(self) -> None:
        for effect in self.state.take_effects():
            if isinstance(effect, Assign):
                self.out[effect.attempt_id] = effect
        self.store.save(self.state.take_changes())
        for run in self.state.evict_finished():  # as the master does after each commit
            assert run.state is not RunState.RUNNING, run.id
            stored = self.store.read_run(run.id)
            assert stored is not None
            assert run_snapshot(build_run(stored.runs[0], stored.jobs, stored.attempts)) == run_snapshot(run)

    @rule(worker=st.sampled_from(WORKERS), slots=st.integers(1, 3))
    def worker_connects(self, worker: str, slots: int) -> None:
        # A worker that comes back holds nothing: the master loses what it had there.
        self.state.worker_connected(WorkerHello(worker_id=worker, name=worker, slots=slots), self.now)
        self.connected.add(worker)
        self.settle()

    @rule(worker=st.sampled_from(WORKERS))
    def worker_drops(self, worker: str) -> None:
        if worker in self.connected:
            self.state.worker_disconnected(worker, self.now, "stream closed")
            self.connected.discard(worker)
            self.settle()

    @rule(
        shape=st.lists(
            st.tuples(st.integers(0, 3), st.sampled_from(["plain", "retry", "delay", "gate", "upstream"])),
            min_size=1,
            max_size=5,
        )
    )
    def submit(self, shape: list[tuple[int, str]]) -> None:
        self.runs += 1
        specs = []
        for n, (parent, flavour) in enumerate(shape):
            parents = (f"j{parent}",) if n and parent < n else ()
            specs.append(spec(f"j{n}", parents, flavour))
        self.state.submit_run(f"r{self.runs}", "fuzz", specs, self.now)
        self.settle()

    @precondition(lambda self: self.out)
    @rule(data=st.data())
    def attempt_starts(self, data: st.DataObject) -> None:
        attempt_id = data.draw(st.sampled_from(sorted(self.out)))
        assign = self.out[attempt_id]
        self.state.attempt_started(assign.worker_id, attempt_id, 4242, self.now, self.now)
        self.settle()

    @precondition(lambda self: self.out)
    @rule(data=st.data(), outcome=st.sampled_from(["succeeded", "failed", "error"]))
    def attempt_ends(self, data: st.DataObject, outcome: str) -> None:
        attempt_id = data.draw(st.sampled_from(sorted(self.out)))
        assign = self.out.pop(attempt_id)
        code = 0 if outcome == "succeeded" else 1
        self.state.attempt_finished(assign.worker_id, attempt_id, AttemptExit(outcome, code), self.now)
        self.settle()

    @rule(data=st.data())
    def cancel_a_run(self, data: st.DataObject) -> None:
        if self.runs:
            run = data.draw(st.integers(1, self.runs))
            if f"r{run}" in self.state.runs:  # one that ended has left memory (the master answers it)
                self.state.cancel(f"r{run}", self.now)
            self.settle()

    @rule(data=st.data(), approved=st.booleans())
    def decide_a_gate(self, data: st.DataObject, approved: bool) -> None:
        gates = [job for job in self.state.open_gates() if job.decision is None]
        if gates:
            job = data.draw(st.sampled_from(gates))
            self.state.decide_gate(job.ref, approved, "tester", "", self.now)
            self.settle()

    @rule(seconds=st.sampled_from([0.5, 3.0, LEASE + 1]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        for worker in self.connected:  # connected workers keep beating
            self.state.heartbeat(worker, self.now)
        self.state.tick(self.now)
        self.settle()

    @rule()
    def master_restarts(self) -> None:
        self.settle()
        before = snapshot(self.state)
        snap = self.store.load()
        fresh = self.new_state()
        fresh.restore(snap.runs, snap.jobs, snap.attempts, snap.workers, self.now, snap.last_seq)
        fresh.take_effects()
        assert snapshot(fresh) == before
        self.state = fresh
        self.connected = set()
        self.out = {}  # workers reconnect without their attempts: the master loses them
        self.settle()

    # ------------------------------------------------------------ invariants

    @invariant()
    def unfinished_counts_the_jobs_that_have_not_ended(self) -> None:
        for run in self.state.runs.values():
            assert run.unfinished == sum(1 for j in run.jobs.values() if not j.state.terminal), run.id

    @invariant()
    def a_job_has_at_most_one_attempt_out(self) -> None:
        for run in self.state.runs.values():
            for job in run.jobs.values():
                out = [a for a in job.attempts if not a.state.terminal]
                assert len(out) <= 1, job.ref
                if out:
                    assert job.attempts[-1] is out[0], job.ref

    @invariant()
    def what_was_persisted_restores_to_the_live_state(self) -> None:
        if not hasattr(self, "store"):
            return
        self.store.save(self.state.take_changes())
        snap = self.store.load()
        stored = {(row["run_id"], row["job_id"]): row["state"] for row in snap.jobs}
        live = {
            (job.run_id, job.id): job.state.value
            for run in self.state.runs.values()
            if run.state is RunState.RUNNING
            for job in run.jobs.values()
        }
        assert stored == live


TestControlPlane = ControlPlane.TestCase
TestControlPlane.settings = settings(
    max_examples=500, stateful_step_count=50, deadline=None, suppress_health_check=list(HealthCheck)
)
