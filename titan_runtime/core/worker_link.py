"""The worker's side of its link to the master, as a state machine that never touches a socket.

For each attempt it runs, a worker must tell its master, once per connection and in order: that it
started (pid, ports), that a service became healthy, every byte of its output, and how it ended,
after the last byte. The master acknowledges an end; only then may the worker forget the attempt.
A reconnect starts a new connection: the master's welcome says how much output it has of each
attempt, and which attempts are no longer this worker's (superseded while it was away: stop them).

It also decides what becomes of each attempt's process: an assignment starts one unless the
attempt is held already (a repeat after a reconnect); a cancel stops it only while it runs; a
stopping worker hands back what it is given; a superseded attempt is killed, and what is kept of it
removed once its process has ended.

This module decides all of that and does none of it: the driver (worker/agent.py) feeds it events
(`Assigned`, `Cancelled`, `HandingBack`, `StopAll`, `Observed` facts about an attempt, `Welcomed`,
`Acked`) and carries out the instructions it returns (`StartProcess`, `Stop`, `Kill`, `Forget`),
and asks `report(budget)` what to send next. How an attempt ended (`exit`) is the driver's value,
passed through untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------- what the driver observes


@dataclass(frozen=True)
class AttemptFacts:
    """What is true of an attempt now, as its process and spool say."""

    attempt_id: str
    pid: int = 0  # 0: not started (yet)
    started_at: float = 0.0
    ports: Mapping[str, int] = field(default_factory=dict)
    healthy: bool = False
    output_size: int = 0  # bytes of output it has written so far
    exit: Any = None  # how it ended, as the driver keeps it; None while it runs


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Assigned:
    attempt_id: str


@dataclass(frozen=True)
class Cancelled:
    """The master cancelled the attempt (or its run)."""

    attempt_id: str
    reason: str
    grace: float


@dataclass(frozen=True)
class HandingBack:
    """The worker is stopping: whatever is assigned from now on is handed back unstarted."""


@dataclass(frozen=True)
class StopAll:
    """The worker is leaving: stop every attempt still running."""

    reason: str
    grace: float


@dataclass(frozen=True)
class Observed:
    facts: AttemptFacts


@dataclass(frozen=True)
class Welcomed:
    """A new connection: the attempts superseded while away, and the output the master has."""

    superseded: tuple[str, ...] = ()
    log_offsets: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Acked:
    attempt_ids: tuple[str, ...]


Event = Assigned | Cancelled | HandingBack | StopAll | Observed | Welcomed | Acked

# ---------------------------------------------------------------- instructions


@dataclass(frozen=True)
class StartProcess:
    attempt_id: str


@dataclass(frozen=True)
class Stop:
    """Stop the attempt's process (SIGTERM, SIGKILL after `grace`), or make sure it never starts;
    it ends as cancelled, and that end is reported."""

    attempt_id: str
    reason: str
    grace: float


@dataclass(frozen=True)
class Kill:
    """Kill the attempt's process now without a word to the master: it is another worker's (or no
    one's) now. A `Forget` follows once it has ended."""

    attempt_id: str


@dataclass(frozen=True)
class Forget:
    """Remove what is kept of the attempt: the master has all of it and acknowledged its end, or
    it was superseded and its process has ended."""

    attempt_id: str


@dataclass(frozen=True)
class ReportStarted:
    facts: AttemptFacts


@dataclass(frozen=True)
class ReportHealthy:
    attempt_id: str


@dataclass(frozen=True)
class SendOutput:
    """Send `length` bytes of the attempt's output from `offset`."""

    attempt_id: str
    offset: int
    length: int


@dataclass(frozen=True)
class ReportFinished:
    attempt_id: str
    exit: Any


Instruction = (
    StartProcess | Stop | Kill | Forget | ReportStarted | ReportHealthy | SendOutput | ReportFinished
)

#: The reason an attempt assigned to a stopping worker ends with (the master runs it elsewhere).
HAND_BACK = "handed back: the worker is stopping"


@dataclass
class _Attempt:
    facts: AttemptFacts
    # What this connection's master has been told.
    sent: int = 0
    started_sent: bool = False
    healthy_sent: bool = False
    finish_sent: bool = False
    acked: bool = False
    superseded: bool = False  # another worker's now: killed, never reported, forgotten once ended
    #: What the last hello said of it: all that a master that welcomes that hello knows.
    in_hello: AttemptFacts | None = None

    @property
    def forgettable(self) -> bool:
        return self.acked and self.facts.exit is not None and self.sent >= self.facts.output_size


class WorkerLink:
    """The worker's protocol state for every attempt it holds."""

    def __init__(self) -> None:
        self._attempts: dict[str, _Attempt] = {}
        self._handing_back = False

    def __contains__(self, attempt_id: str) -> bool:
        return attempt_id in self._attempts

    def handle(self, event: Event) -> list[Instruction]:
        if isinstance(event, Observed):
            return self._observed(event.facts)
        if isinstance(event, Assigned):
            return self._assigned(event.attempt_id)
        if isinstance(event, Cancelled):
            running = self._running(event.attempt_id)
            return [Stop(event.attempt_id, event.reason, event.grace)] if running else []
        if isinstance(event, HandingBack):
            self._handing_back = True
            return []
        if isinstance(event, StopAll):
            return [Stop(a, event.reason, event.grace) for a in list(self._attempts) if self._running(a)]
        if isinstance(event, Welcomed):
            return self._welcomed(event)
        if isinstance(event, Acked):
            return self._acked(event.attempt_ids)
        raise TypeError(f"not a worker link event: {event!r}")

    def _assigned(self, attempt_id: str) -> list[Instruction]:
        if attempt_id in self._attempts:  # a repeat (the master resends what it has not heard of)
            return []
        self._attempts[attempt_id] = _Attempt(AttemptFacts(attempt_id))
        if self._handing_back:
            return [StartProcess(attempt_id), Stop(attempt_id, HAND_BACK, 0.0)]
        return [StartProcess(attempt_id)]

    def _running(self, attempt_id: str) -> bool:
        attempt = self._attempts.get(attempt_id)
        return attempt is not None and not attempt.superseded and attempt.facts.exit is None

    def _observed(self, facts: AttemptFacts) -> list[Instruction]:
        attempt = self._attempts.get(facts.attempt_id)
        if attempt is None:
            return []
        attempt.facts = facts
        if attempt.superseded and facts.exit is not None:
            del self._attempts[facts.attempt_id]
            return [Forget(facts.attempt_id)]
        return []

    def _welcomed(self, welcome: Welcomed) -> list[Instruction]:
        out: list[Instruction] = []
        for attempt_id in welcome.superseded:
            attempt = self._attempts.get(attempt_id)
            if attempt is None or attempt.superseded:
                continue
            attempt.superseded = True
            if attempt.facts.exit is None:
                out.append(Kill(attempt_id))
            else:
                del self._attempts[attempt_id]
                out.append(Forget(attempt_id))
        for attempt in self._live():  # the new master knows what the hello held, no more
            said = attempt.in_hello or attempt.facts
            attempt.sent = welcome.log_offsets.get(said.attempt_id, 0)
            attempt.started_sent = bool(said.pid)
            # An attempt that ended after the hello was made (while the master answered it) is
            # still to be reported: the hello said it was running.
            attempt.finish_sent = said.exit is not None
            attempt.healthy_sent = said.healthy
        return out

    def _live(self) -> list[_Attempt]:
        """The attempts that are this worker's to report (not superseded)."""
        return [a for a in self._attempts.values() if not a.superseded]

    def _acked(self, attempt_ids: tuple[str, ...]) -> list[Instruction]:
        out: list[Instruction] = []
        for attempt_id in attempt_ids:
            attempt = self._attempts.get(attempt_id)
            if attempt is not None and not attempt.superseded:
                attempt.acked = True
                out.extend(self._forget_if_done(attempt))
        return out

    def _forget_if_done(self, attempt: _Attempt) -> list[Instruction]:
        if not attempt.forgettable:
            return []
        del self._attempts[attempt.facts.attempt_id]
        return [Forget(attempt.facts.attempt_id)]

    def held(self) -> list[AttemptFacts]:
        """What a hello says this worker holds: every attempt not yet forgotten (remembered as
        what the master that welcomes this hello knows of each)."""
        live = self._live()
        for attempt in live:
            attempt.in_hello = attempt.facts
        return [a.facts for a in live]

    def report(self, budget: int) -> list[Instruction]:
        """What this connection's master has not been told yet, with at most `budget` bytes of
        output, as instructions to carry out in order; counted as told once returned."""
        out: list[Instruction] = []
        for attempt in self._live():
            facts = attempt.facts
            if facts.pid and not attempt.started_sent:
                attempt.started_sent = True
                out.append(ReportStarted(facts))
            if facts.healthy and not attempt.healthy_sent and facts.exit is None:
                attempt.healthy_sent = True
                out.append(ReportHealthy(facts.attempt_id))
            length = min(facts.output_size - attempt.sent, budget)
            if length > 0:
                out.append(SendOutput(facts.attempt_id, attempt.sent, length))
                attempt.sent += length
                budget -= length
            if facts.exit is not None and not attempt.finish_sent and attempt.sent >= facts.output_size:
                attempt.finish_sent = True
                out.append(ReportFinished(facts.attempt_id, facts.exit))
            out.extend(self._forget_if_done(attempt))
        return out

    def running(self) -> int:
        return sum(1 for a in self._live() if a.facts.exit is None)
