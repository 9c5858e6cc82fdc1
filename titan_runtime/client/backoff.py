"""Retrying with exponential backoff: one helper for every loop that tries again.

The worker reconnecting to its master, a webhook provider posting a request, the Airflow trigger
and log follower riding out a master restart, and the clients' own reconnect policy
(reconnect.py) all wait the same way: a first delay, doubling up to a ceiling, optionally spread by
jitter so that many of them do not come back in step, until the failures have lasted too long or
happened too often.

Sans-IO: it says how long to wait and never sleeps; the clock and the randomness are injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Backoff:
    """One run of failures. `next_delay()` after each failure: the seconds to wait before trying
    again, or None to give up (after `attempts` retries, or once failing for `patience` seconds);
    `reset()` after a success.

    With `jitter` (a function returning [0, 1), e.g. random.random) each delay is spread between half
    and all of its step, never more: the ceiling holds.
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        attempts: int | None = None,
        patience: float | None = None,
        jitter: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempts = attempts
        self.patience = patience
        self.jitter = jitter
        self.clock = clock
        self.failures = 0
        self.since: float | None = None  # when this run of failures began

    def reset(self) -> None:
        self.failures = 0
        self.since = None

    @property
    def failing_for(self) -> float:
        """Seconds since the first failure of this run (0 without one)."""
        return 0.0 if self.since is None else self.clock() - self.since

    def next_delay(self) -> float | None:
        now = self.clock()
        if self.since is None:
            self.since = now
        if self.attempts is not None and self.failures >= self.attempts:
            return None
        if self.patience is not None and now - self.since > self.patience:
            return None
        step = min(self.maximum, self.initial * 2 ** min(self.failures, 64))  # no float overflow
        self.failures += 1
        return step if self.jitter is None else step * (0.5 + 0.5 * self.jitter())
