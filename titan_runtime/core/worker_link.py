"""The worker's side of its link to the master, as a state machine that never touches a socket.

For each attempt it runs, a worker must tell its master, once per connection and in order: that it
started (pid, ports), that a service became healthy, every byte of its output, and how it ended,
after the last byte. The master acknowledges an end; only then may the worker forget the attempt.
A reconnect starts a new connection: the master's welcome says how much output it has of each
attempt, and which attempts are no longer this worker's (superseded while it was away: stop them).

This module decides all of that and does none of it: the driver (worker/agent.py) feeds it events
(`Assigned`, `Observed` facts about an attempt, `Welcomed`, `Acked`) and carries out the
instructions it returns (`Kill`, `Forget`), and asks `report(budget)` what to send next. How an
attempt ended (`exit`) is the driver's value, passed through untouched.
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


Event = Assigned | Observed | Welcomed | Acked

# ---------------------------------------------------------------- instructions


@dataclass(frozen=True)
class Kill:
    """Stop the attempt's process now, and drop it: it is another worker's (or no one's) now."""

    attempt_id: str


@dataclass(frozen=True)
class Forget:
    """The master has the whole attempt and acknowledged its end: remove what is kept of it."""

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


Instruction = Kill | Forget | ReportStarted | ReportHealthy | SendOutput | ReportFinished


@dataclass
class _Attempt:
    facts: AttemptFacts
    # What this connection's master has been told.
    sent: int = 0
    started_sent: bool = False
    healthy_sent: bool = False
    finish_sent: bool = False
    acked: bool = False

    @property
    def forgettable(self) -> bool:
        return self.acked and self.facts.exit is not None and self.sent >= self.facts.output_size


class WorkerLink:
    """The worker's protocol state for every attempt it holds."""

    def __init__(self) -> None:
        self._attempts: dict[str, _Attempt] = {}

    def __contains__(self, attempt_id: str) -> bool:
        return attempt_id in self._attempts

    def handle(self, event: Event) -> list[Instruction]:
        if isinstance(event, Assigned):
            self._attempts.setdefault(event.attempt_id, _Attempt(AttemptFacts(event.attempt_id)))
            return []
        if isinstance(event, Observed):
            found = self._attempts.get(event.facts.attempt_id)
            if found is not None:
                found.facts = event.facts
            return []
        if isinstance(event, Welcomed):
            return self._welcomed(event)
        if isinstance(event, Acked):
            return self._acked(event.attempt_ids)
        raise TypeError(f"not a worker link event: {event!r}")

    def _welcomed(self, welcome: Welcomed) -> list[Instruction]:
        out: list[Instruction] = []
        for attempt_id in welcome.superseded:
            if self._attempts.pop(attempt_id, None) is not None:
                out.append(Kill(attempt_id))
        for attempt in self._attempts.values():  # the new master knows what the hello held
            facts = attempt.facts
            attempt.sent = welcome.log_offsets.get(facts.attempt_id, 0)
            attempt.started_sent = bool(facts.pid)
            attempt.finish_sent = facts.exit is not None
            attempt.healthy_sent = facts.healthy
        return out

    def _acked(self, attempt_ids: tuple[str, ...]) -> list[Instruction]:
        out: list[Instruction] = []
        for attempt_id in attempt_ids:
            attempt = self._attempts.get(attempt_id)
            if attempt is not None:
                attempt.acked = True
                out.extend(self._forget_if_done(attempt))
        return out

    def _forget_if_done(self, attempt: _Attempt) -> list[Instruction]:
        if not attempt.forgettable:
            return []
        del self._attempts[attempt.facts.attempt_id]
        return [Forget(attempt.facts.attempt_id)]

    def held(self) -> list[AttemptFacts]:
        """What a hello says this worker holds: every attempt not yet forgotten."""
        return [a.facts for a in self._attempts.values()]

    def report(self, budget: int) -> list[Instruction]:
        """What this connection's master has not been told yet, with at most `budget` bytes of
        output, as instructions to carry out in order; counted as told once returned."""
        out: list[Instruction] = []
        for attempt in list(self._attempts.values()):
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
        return sum(1 for a in self._attempts.values() if a.facts.exit is None)
