"""The worker's side of the link (core/worker_link.py), driven without a process or a socket:
sequences a worker meets (a reconnect mid-job, a lost ack, a master restart, an attempt superseded
while away) and a property over random sequences: an attempt's end is reported once per
connection, after all of its output, and nothing is forgotten before the master acknowledged it."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from titan_runtime.core.worker_link import (
    HAND_BACK,
    Acked,
    Assigned,
    AttemptFacts,
    Cancelled,
    Forget,
    HandingBack,
    Kill,
    Observed,
    ReportFinished,
    ReportHealthy,
    ReportStarted,
    SendOutput,
    StartProcess,
    Stop,
    StopAll,
    Welcomed,
    WorkerLink,
)

BIG = 1 << 30


def run(link: WorkerLink, facts: AttemptFacts) -> list:
    link.handle(Observed(facts))
    return link.report(BIG)


def test_start_output_end_in_order_then_forgotten_once_acknowledged() -> None:
    link = WorkerLink()
    link.handle(Assigned("a1"))
    assert run(link, AttemptFacts("a1")) == []
    started = AttemptFacts("a1", pid=42, started_at=1.0, output_size=5)
    assert run(link, started) == [ReportStarted(started), SendOutput("a1", 0, 5)]
    ended = replace(started, output_size=8, exit="exit 0")
    assert run(link, ended) == [SendOutput("a1", 5, 3), ReportFinished("a1", "exit 0")]
    assert run(link, ended) == []  # told once
    assert link.handle(Acked(("a1",))) == [Forget("a1")]
    assert "a1" not in link and link.held() == []


def test_the_end_waits_for_the_last_byte_of_output_under_a_small_budget() -> None:
    link = WorkerLink()
    link.handle(Assigned("a1"))
    link.handle(Observed(AttemptFacts("a1", pid=1, output_size=10, exit="done")))
    assert link.report(4) == [
        ReportStarted(AttemptFacts("a1", pid=1, output_size=10, exit="done")),
        SendOutput("a1", 0, 4),
    ]
    assert link.report(4) == [SendOutput("a1", 4, 4)]
    assert link.report(4) == [SendOutput("a1", 8, 2), ReportFinished("a1", "done")]


def test_a_reconnect_mid_job_resends_what_the_new_master_lacks_and_nothing_else() -> None:
    link = WorkerLink()
    link.handle(Assigned("a1"))
    running = AttemptFacts("a1", pid=7, output_size=100)
    run(link, running)
    # The connection drops; the master restarted and kept only 60 bytes of the output.
    assert link.held() == [running]
    assert link.handle(Welcomed((), {"a1": 60})) == []
    assert link.report(BIG) == [SendOutput("a1", 60, 40)]  # the start was in the hello


def test_a_lost_ack_is_harmless_the_next_master_acknowledges_the_end_from_the_hello() -> None:
    link = WorkerLink()
    link.handle(Assigned("a1"))
    ended = AttemptFacts("a1", pid=7, output_size=3, exit="exit 1")
    assert ReportFinished("a1", "exit 1") in run(link, ended)
    # The ack never came; after the reconnect the hello holds the ended attempt, and the end is
    # not reported again: the master learns it from the hello.
    assert link.handle(Welcomed((), {"a1": 3})) == []
    assert link.report(BIG) == []
    assert link.handle(Acked(("a1",))) == [Forget("a1")]


def test_an_end_acknowledged_from_the_hello_still_sends_the_rest_of_the_output_first() -> None:
    link = WorkerLink()
    link.handle(Assigned("a1"))
    ended = AttemptFacts("a1", pid=7, output_size=50, exit="exit 0")
    link.handle(Observed(ended))
    assert link.report(10)[-1] == SendOutput("a1", 0, 10)
    # A master restart: the hello says the attempt ended, the master adopts and acknowledges it
    # at once, though it has 10 of its 50 bytes of output.
    assert link.handle(Welcomed((), {"a1": 10})) == []
    assert link.handle(Acked(("a1",))) == []
    assert link.report(BIG) == [SendOutput("a1", 10, 40), Forget("a1")]


def test_an_attempt_superseded_while_away_is_killed_never_reported_and_removed_once_ended() -> None:
    link = WorkerLink()
    for attempt in ("a1", "a2", "a3"):
        link.handle(Assigned(attempt))
        run(link, AttemptFacts(attempt, pid=1))
    link.handle(Observed(AttemptFacts("a3", pid=1, exit="done")))  # ended while the link was down
    assert link.handle(Welcomed(("a1", "a3", "unknown"), {})) == [Kill("a1"), Forget("a3")]
    assert link.handle(Cancelled("a1", "late", 1.0)) == []  # being killed already
    assert link.report(BIG) == [] and [f.attempt_id for f in link.held()] == ["a2"]
    assert link.handle(Observed(AttemptFacts("a1", pid=1, exit="killed"))) == [Forget("a1")]
    assert link.report(BIG) == [] and "a1" not in link


def test_an_assignment_starts_a_process_once_and_a_cancel_stops_only_what_runs() -> None:
    link = WorkerLink()
    assert link.handle(Assigned("a1")) == [StartProcess("a1")]
    assert link.handle(Assigned("a1")) == []  # the master resent it: one process
    # Cancelled before its process started (the driver makes sure it never does).
    assert link.handle(Cancelled("a1", "by user", 2.0)) == [Stop("a1", "by user", 2.0)]
    assert link.handle(Cancelled("nobody", "by user", 2.0)) == []
    link.handle(Observed(AttemptFacts("a1", exit="cancelled")))
    assert link.handle(Cancelled("a1", "again", 2.0)) == []  # ended: nothing to stop


def test_a_stopping_worker_hands_back_new_work_and_stops_what_runs() -> None:
    link = WorkerLink()
    link.handle(Assigned("running"))
    link.handle(Assigned("done"))
    link.handle(Observed(AttemptFacts("done", pid=1, exit="ok")))
    assert link.handle(HandingBack()) == []
    assert link.handle(Assigned("late")) == [StartProcess("late"), Stop("late", HAND_BACK, 0.0)]
    assert link.handle(StopAll("worker stopping", 5.0)) == [
        Stop("running", "worker stopping", 5.0),
        Stop("late", "worker stopping", 5.0),
    ]


def test_cancel_before_start_ends_without_a_start_report_and_a_service_reports_health_once() -> None:
    link = WorkerLink()
    link.handle(Assigned("never"))
    assert run(link, AttemptFacts("never", exit="cancelled")) == [ReportFinished("never", "cancelled")]
    link.handle(Assigned("svc"))
    healthy = AttemptFacts("svc", pid=3, ports={"http": 8000}, healthy=True)
    assert run(link, healthy) == [ReportStarted(healthy), ReportHealthy("svc")]
    assert run(link, healthy) == [] and link.running() == 1


# ---------------------------------------------------------------- the property

ATTEMPTS = ("a", "b", "c")
steps = st.lists(
    st.one_of(
        st.tuples(st.just("assign"), st.sampled_from(ATTEMPTS)),
        st.tuples(st.just("cancel"), st.sampled_from(ATTEMPTS)),
        st.tuples(st.just("start"), st.sampled_from(ATTEMPTS)),
        st.tuples(st.just("print"), st.sampled_from(ATTEMPTS), st.integers(1, 50)),
        st.tuples(st.just("exit"), st.sampled_from(ATTEMPTS)),
        st.tuples(st.just("report"), st.integers(1, 60)),
        st.tuples(st.just("ack"), st.sampled_from(ATTEMPTS)),
        st.tuples(st.just("reconnect"), st.lists(st.sampled_from(ATTEMPTS), max_size=1)),
    ),
    max_size=60,
)


@settings(max_examples=1000, deadline=None)
@given(steps)
def test_no_sequence_reports_an_end_twice_or_before_its_output_or_loses_one(sequence: list) -> None:
    link = WorkerLink()
    facts: dict[str, AttemptFacts] = {}
    master_has: dict[str, int] = {}  # output bytes the master holds (survives reconnects)
    ended_told: set[str] = set()  # ends the current connection's master was told
    master_ends: set[str] = set()  # ends the master knows (told, or in a hello)
    superseded: set[str] = set()

    def observe() -> None:
        for attempt_id in list(facts):
            link.handle(Observed(facts[attempt_id]))

    def deliver(instructions: list) -> None:
        for instruction in instructions:
            if isinstance(instruction, SendOutput):
                assert instruction.offset == master_has.get(instruction.attempt_id, 0), "a gap or a repeat"
                master_has[instruction.attempt_id] = instruction.offset + instruction.length
            elif isinstance(instruction, ReportFinished):
                attempt_id = instruction.attempt_id
                assert attempt_id not in ended_told, "an end reported twice on one connection"
                assert master_has.get(attempt_id, 0) == facts[attempt_id].output_size, "end before output"
                ended_told.add(attempt_id)
                master_ends.add(attempt_id)
            elif isinstance(instruction, Forget):
                forgotten(instruction.attempt_id)

    def forgotten(attempt_id: str) -> None:
        assert attempt_id in master_ends, "forgotten before the master knew its end"
        assert master_has.get(attempt_id, 0) == facts[attempt_id].output_size, "forgotten with output unsent"
        del facts[attempt_id]

    for step in sequence:
        kind = step[0]
        if kind == "assign" and step[1] not in superseded:
            started = link.handle(Assigned(step[1]))
            assert started == ([] if step[1] in facts else [StartProcess(step[1])]), "one process per attempt"
            facts.setdefault(step[1], AttemptFacts(step[1]))
        elif kind == "cancel":
            observe()
            running = step[1] in facts and facts[step[1]].exit is None
            stops = link.handle(Cancelled(step[1], "cancelled", 0.0))
            assert stops == ([Stop(step[1], "cancelled", 0.0)] if running else []), "stop only what runs"
        elif kind in ("start", "print", "exit") and step[1] in facts and facts[step[1]].exit is None:
            f = facts[step[1]]
            if kind == "start":
                facts[step[1]] = replace(f, pid=f.pid or 99)
            elif kind == "print" and f.pid:
                facts[step[1]] = replace(f, output_size=f.output_size + step[2])
            elif kind == "exit":
                facts[step[1]] = replace(f, exit="ended")
        elif kind == "report":
            observe()
            deliver(link.report(step[1]))
        elif kind == "ack" and step[1] in master_ends and step[1] in facts:
            observe()
            for instruction in link.handle(Acked((step[1],))):
                assert isinstance(instruction, Forget)
                forgotten(instruction.attempt_id)
            superseded.add(step[1])  # an attempt whose end the master has is never assigned again
        elif kind == "reconnect":
            observe()
            held = link.held()
            master_ends |= {f.attempt_id for f in held if f.exit is not None}
            ended_told = set()
            gone = tuple(a for a in step[1] if a in facts)
            instructions = link.handle(Welcomed(gone, {a: master_has.get(a, 0) for a in facts}))
            assert instructions == [
                Kill(a) if facts[a].exit is None else Forget(a) for a in dict.fromkeys(gone)
            ], "a superseded attempt is killed, or removed when it has ended"
            for attempt_id in gone:
                superseded.add(attempt_id)
                del facts[attempt_id]
    # Nothing lost: reporting until quiet tells the master every end of what is still held.
    observe()
    while instructions := link.report(60):
        deliver(instructions)
    for attempt_id, f in facts.items():
        if f.exit is not None:
            assert attempt_id in master_ends, f"the end of {attempt_id} was never reported"
            assert master_has.get(attempt_id, 0) == f.output_size


def test_an_end_between_the_hello_and_its_welcome_is_reported_to_the_new_master() -> None:
    link = WorkerLink()
    link.handle(Assigned("a1"))
    running = AttemptFacts("a1", pid=7, output_size=4)
    run(link, running)
    assert link.held() == [running]  # the hello says it runs
    ended = replace(running, output_size=6, exit="exit 0")
    link.handle(Observed(ended))  # it ends while the new master answers the hello
    assert link.handle(Welcomed((), {"a1": 4})) == []
    assert link.report(BIG) == [SendOutput("a1", 4, 2), ReportFinished("a1", "exit 0")]
