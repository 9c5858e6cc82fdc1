"""The one backoff every retry loop uses (client/backoff.py): delays, jitter, and when to give up."""

from __future__ import annotations

from titan_runtime.client.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_delays_double_up_to_the_ceiling_and_start_over_after_a_success() -> None:
    backoff = Backoff(0.5, 8.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_jitter_spreads_each_delay_between_half_and_all_of_its_step() -> None:
    low, high = Backoff(1.0, 4.0, jitter=lambda: 0.0), Backoff(1.0, 4.0, jitter=lambda: 0.999)
    assert [low.next_delay() for _ in range(4)] == [0.5, 1.0, 2.0, 2.0]
    assert all(d is not None and d < 4.0 for d in (high.next_delay() for _ in range(10)))


def test_it_gives_up_after_its_attempts_or_its_patience() -> None:
    counted = Backoff(0.1, 1.0, attempts=2)
    assert [counted.next_delay() for _ in range(3)] == [0.1, 0.2, None]
    clock = Clock()
    patient = Backoff(1.0, 1.0, patience=3.0, clock=clock)
    delays = []
    while (delay := patient.next_delay()) is not None:
        delays.append(delay)
        clock.now += delay
    assert delays == [1.0, 1.0, 1.0, 1.0] and patient.failing_for == 4.0
    patient.reset()
    assert patient.failing_for == 0.0 and patient.next_delay() == 1.0


def test_a_loop_that_never_gives_up_does_not_overflow() -> None:
    backoff = Backoff(0.1, 1.0)
    backoff.failures = 5000
    assert backoff.next_delay() == 1.0
