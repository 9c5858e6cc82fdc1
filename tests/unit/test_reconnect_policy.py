"""The reconnect policy and the operations that use it, driven without a network or a clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from titan_runtime.client import ops
from titan_runtime.client.errors import TitanConnectionError
from titan_runtime.client.reconnect import Reconnect
from titan_runtime.proto import titan_pb2 as pb

ADDRESS = "10.1.2.3:9090"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def policy(timeout: float = 10.0, jitter: float = 1.0, reached: bool = True) -> tuple[Reconnect, Clock]:
    clock = Clock()
    reconnect = Reconnect(ADDRESS, timeout, clock=clock, jitter=lambda: jitter)
    if reached:
        reconnect.answered()
    return reconnect, clock


def cut() -> TitanConnectionError:
    return TitanConnectionError(f"the Titan master at {ADDRESS} is unavailable: Cancelling all calls", True)


def test_delays_double_from_a_tenth_to_two_seconds_with_jitter_down_to_half() -> None:
    reconnect, _ = policy(timeout=1000)
    outage = reconnect.outage()
    assert [outage.retry_in(cut()) for _ in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    reconnect.jitter = lambda: 0.0
    assert outage.retry_in(cut()) == 1.0


def test_gives_up_naming_the_address_once_the_master_has_been_gone_for_the_timeout() -> None:
    reconnect, clock = policy(timeout=2.0)
    outage = reconnect.outage()
    while True:
        try:
            delay = outage.retry_in(cut())
        except TitanConnectionError as exc:
            error = exc
            break
        assert clock.now + delay <= 102.0  # the last try is at the deadline, not after it
        clock.now += delay
    assert str(error).startswith(f"the Titan master at {ADDRESS} has been unreachable for 2.0s")
    assert "\n" not in str(error)
    assert isinstance(error.__cause__, TitanConnectionError)


def test_an_answer_starts_the_next_outage_afresh() -> None:
    reconnect, clock = policy(timeout=2.0)
    outage = reconnect.outage()
    outage.retry_in(cut())
    clock.now += 1.9
    outage.reset()
    clock.now += 30  # connected and quiet for a long time, then cut again
    assert outage.retry_in(cut()) == 0.1


@pytest.mark.parametrize(
    ("error", "timeout", "reached"),
    [
        (TitanConnectionError("did not answer in time"), 10.0, True),  # DEADLINE_EXCEEDED: may still run
        (cut(), 0.0, True),  # reconnect_timeout=0 turns it off
        (cut(), 10.0, False),  # never reached: a wrong address says so at once
    ],
)
def test_errors_that_are_not_ridden_out(error: TitanConnectionError, timeout: float, reached: bool) -> None:
    reconnect, _ = policy(timeout=timeout, reached=reached)
    with pytest.raises(TitanConnectionError) as caught:
        reconnect.outage().retry_in(error)
    assert caught.value is error


def test_a_wait_with_its_own_deadline_does_not_retry_past_it() -> None:
    reconnect, clock = policy()
    with pytest.raises(TitanConnectionError, match="Cancelling"):
        reconnect.outage().retry_in(cut(), not_after=clock.now)


# ---------------------------------------------------------------- operations


def drive(op: ops.Op[Any], answer: Callable[[ops.Call], Any], clock: Clock | None = None) -> Any:
    """What both clients' `_run` do, with `answer` standing for the master (it may raise)."""
    step = next(op)
    try:
        while True:
            if isinstance(step, ops.Sleep):
                if clock is not None:
                    clock.now += step.seconds
                step = op.send(None)
                continue
            try:
                response = answer(step)
            except TitanConnectionError as exc:
                step = op.throw(exc)
            else:
                step = op.send(response)
    except StopIteration as stop:
        return stop.value


def flaky(failures: int, response: Any) -> tuple[Callable[[ops.Call], Any], list[ops.Call]]:
    calls: list[ops.Call] = []

    def answer(call: ops.Call) -> Any:
        calls.append(call)
        if len(calls) <= failures:
            raise cut()
        return response

    return answer, calls


def test_reads_are_asked_again_until_the_master_answers() -> None:
    reconnect, clock = policy()
    answer, calls = flaky(3, pb.JobInfo(id="j", state="RUNNING"))
    record = drive(ops.get_job("r/j", reconnect), answer, clock)
    assert record.state == "RUNNING"
    assert [c.method for c in calls] == ["GetJob"] * 4


def test_a_long_poll_asks_again_with_what_is_left_of_its_timeout() -> None:
    reconnect, clock = policy()
    answer, calls = flaky(2, pb.JobInfo(id="j", state="SUCCEEDED"))
    assert drive(ops.wait_job("r/j", 5.0, reconnect), answer, clock).state == "SUCCEEDED"
    assert [round(c.request.timeout, 6) for c in calls] == [5.0, 4.9, 4.7]  # after sleeps of 0.1, 0.2


def test_a_long_poll_past_its_own_timeout_raises_what_cut_it() -> None:
    reconnect, clock = policy()
    answer, _ = flaky(100, None)
    with pytest.raises(TitanConnectionError, match="Cancelling all calls"):
        drive(ops.wait_job("r/j", 1.0, reconnect), answer, clock)
    assert clock.now - 100.0 == pytest.approx(1.0)  # the last try at its timeout, then the error


@pytest.mark.parametrize(
    "op",
    [
        ops.submit_run([], name="x"),  # without a run id: a repeat could start the work twice
        ops.kv("put", "k", "v"),
        ops.cancel("r"),
    ],
    ids=["submit", "kv-put", "cancel"],
)
def test_calls_that_must_not_happen_twice_fail_at_once(op: ops.Op[Any]) -> None:
    answer, calls = flaky(1, None)
    with pytest.raises(TitanConnectionError, match="Cancelling"):
        drive(op, answer)
    assert len(calls) == 1


def test_a_submission_with_a_run_id_is_asked_again() -> None:
    reconnect, _ = policy()
    answer, calls = flaky(1, pb.SubmitRunResponse(run_id="mine"))
    assert drive(ops.submit_run([], name="x", run_id="mine", reconnect=reconnect), answer).run_id == "mine"
    assert len(calls) == 2


# ---------------------------------------------------------------- log followers


def chunk(attempt: int, offset: int, *texts: str) -> pb.LogChunk:
    return pb.LogChunk(attempt=attempt, offset=offset, data=b"".join(f"1 O {t}\n".encode() for t in texts))


def test_a_follower_resumes_after_the_last_line_it_handed_out_and_goes_on_into_retries() -> None:
    reconnect, _ = policy()
    follow = ops.LogFollow("r/j", 0, None, reconnect)
    assert follow.request() == pb.ReadLogsRequest(ref="r/j", follow=True, and_later=True)
    delivered = list(follow.lines(pb.LogChunk()))  # the empty chunk a follow stream opens with
    delivered += list(follow.lines(chunk(2, 0, "a", "bb")))
    assert delivered == ["a", "bb"]
    assert follow.request() == pb.ReadLogsRequest(
        ref="r/j", attempt=2, offset=13, follow=True, and_later=True
    )
    # A chunk's lines are all handed out before the stream is read again (where it can break):
    # the position is the chunk's end.
    assert follow.lines(chunk(2, 13, "c", "d")) == ["c", "d"]
    assert follow.request().offset == 25
    assert follow.retry_in(cut()) == 0.1


def test_a_follower_of_one_attempt_stays_in_it() -> None:
    reconnect, _ = policy()
    follow = ops.LogFollow("r/j", 5, 1, reconnect)
    assert follow.request() == pb.ReadLogsRequest(ref="r/j", attempt=1, offset=5, follow=True)
    assert list(follow.lines(chunk(1, 5, "x"))) == ["x"]
    assert follow.request() == pb.ReadLogsRequest(ref="r/j", attempt=1, offset=11, follow=True)
