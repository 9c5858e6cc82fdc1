"""How a client rides out a master restart: one policy, used by the blocking and the asyncio client.

A master restart takes a second or two; the jobs go on meanwhile, so a client waiting for them
should not fail. Idempotent reads and waits are asked again, with exponential backoff and jitter
(0.1 s doubling to 2 s, each step spread between half and all of it, so many clients do not come
back in step), until the master has been unreachable for `timeout` seconds.

Sans-IO: nothing here sleeps or touches the network. An operation asks `Outage.retry_in` how long
to wait and yields a `Sleep` that the driver carries out; the clock and the randomness are
injected so that tests can drive it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from titan_runtime.client.backoff import Backoff
from titan_runtime.client.errors import TitanConnectionError

INITIAL_DELAY = 0.1
MAX_DELAY = 2.0


class Reconnect:
    """A client's reconnect settings, and whether it has ever been answered by the master.

    Only a client that has reached its master once retries: a client pointed at the wrong address,
    or at a master that is not running, should say so at once rather than after a minute.
    """

    def __init__(
        self,
        address: str,
        timeout: float,
        *,
        initial: float = INITIAL_DELAY,
        maximum: float = MAX_DELAY,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.address = address
        self.timeout = float(timeout)
        self.initial = initial
        self.maximum = maximum
        self.clock = clock
        self.jitter = jitter
        self.reached = False

    def answered(self) -> None:
        """The master answered a call: from now on, losing it is a restart to ride out."""
        self.reached = True

    def outage(self) -> Outage:
        """The state of one operation's retries (each operation has its own)."""
        return Outage(self)


class Outage:
    """One operation's run of failed attempts: when it began and how many there were.

    The outage starts at the first failure after the master last answered this operation, so the
    time reported is how long the master has been unreachable as this operation saw it.
    """

    def __init__(self, policy: Reconnect) -> None:
        self.policy = policy
        self._backoff = Backoff(
            policy.initial, policy.maximum, jitter=lambda: policy.jitter(), clock=lambda: policy.clock()
        )  # through the policy: what it is set to later counts

    def reset(self) -> None:
        """The master answered: a later failure starts a new outage."""
        self.policy.answered()
        self._backoff.reset()

    def retry_in(self, error: TitanConnectionError, not_after: float | None = None) -> float:
        """Seconds to wait before asking again; raises `error` when it is not worth retrying, and
        a TitanConnectionError naming the address once the master has been gone too long.

        `not_after` is the caller's own deadline (a `wait(timeout=)`): past it, the error is raised
        as it is, since the caller would not wait longer anyway.
        """
        policy = self.policy
        if not error.unavailable or not policy.reached or policy.timeout <= 0:
            raise error
        now = policy.clock()
        if not_after is not None and now >= not_after:
            raise error
        delay = self._backoff.next_delay() or 0.0  # no limits of its own: never None
        started = self._backoff.since if self._backoff.since is not None else now
        elapsed = now - started
        if elapsed >= policy.timeout:
            raise TitanConnectionError(
                f"the Titan master at {policy.address} has been unreachable for {elapsed:.1f}s "
                f"(reconnect timeout {policy.timeout:g}s): is it running? To wait longer for it, "
                "raise --reconnect-timeout (SDK: reconnect_timeout=, env TITAN_RECONNECT_TIMEOUT)"
            ) from error
        # One last try at the deadline (the policy's, or the caller's) rather than a sleep past it.
        last_try = started + policy.timeout
        if not_after is not None:
            last_try = min(last_try, not_after)
        return max(0.0, min(delay, last_try - now))
