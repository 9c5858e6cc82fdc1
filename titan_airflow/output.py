"""Moving a Titan job's output into an Airflow task log, line by line, without losing or repeating lines.

A `LogCursor` (attempt number, byte offset) says how far the task log has got. Following and
catching up both start from a cursor and advance it, so a stream that breaks (the master
restarting) resumes where it stopped, and a task resumed after a deferral writes exactly the
lines it has not written yet. Offsets are per attempt: a job that Titan re-runs after losing its
worker has a second attempt whose log starts at 0, and both end up in the task log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from titan_runtime import JobRecord, LogLine, TitanClient, TitanConnectionError
from titan_runtime.client.backoff import Backoff

Emit = Callable[[LogLine], None]

#: How long a broken log stream is retried before the task gives up on the master.
RECONNECT_FOR_S = 300.0


@dataclass
class LogCursor:
    """Where the task log has got to: the next byte of `attempt` (attempt 0: nothing read yet)."""

    attempt: int = 0
    offset: int = 0

    def advance(self, line: LogLine) -> None:
        self.attempt, self.offset = line.attempt, line.next_offset

    def to_dict(self) -> dict[str, int]:
        return {"attempt": self.attempt, "offset": self.offset}

    @classmethod
    def from_dict(cls, data: dict[str, int] | None) -> LogCursor:
        data = data or {}
        return cls(attempt=int(data.get("attempt", 0)), offset=int(data.get("offset", 0)))


def follow(
    client: TitanClient,
    ref: str,
    cursor: LogCursor,
    emit: Emit,
    on_reconnect: Callable[[Exception, float], None] | None = None,
    reconnect_for: float = RECONNECT_FOR_S,
) -> JobRecord:
    """Emit the job's lines as they are printed, every attempt, until the job ends; return its record.

    A broken stream (master restart, network) is reopened from the cursor for up to
    `reconnect_for` seconds of continuous failure.
    """
    backoff = Backoff(0.5, 10.0, patience=reconnect_for)

    def emit_and_reset(line: LogLine) -> None:
        backoff.reset()
        emit(line)

    while True:
        try:
            return _follow_once(client, ref, cursor, emit_and_reset)
        except TitanConnectionError as exc:
            delay = backoff.next_delay()
            if delay is None:
                raise
            if on_reconnect is not None:
                on_reconnect(exc, delay)
            time.sleep(delay)


def _follow_once(client: TitanClient, ref: str, cursor: LogCursor, emit: Emit) -> JobRecord:
    attempt = max(cursor.attempt, 1)
    offset = cursor.offset if cursor.attempt else 0
    while True:
        # Following one given attempt returns when that attempt has ended (or at once when the
        # job ended without reaching it); then we look at the job to see what comes next.
        for line in client.follow_logs(ref, offset=offset, attempt=attempt):
            emit(line)
            cursor.advance(line)
            offset = line.next_offset
        record = client.get_job(ref)
        if len(record.attempts) > attempt:
            attempt, offset = attempt + 1, 0
            continue
        if record.terminal:
            return record
        if record.attempts and len(record.attempts) == attempt and record.attempts[-1].ended_at:
            # This attempt is over and the job will run again: follow the next attempt's lines.
            attempt, offset = attempt + 1, 0
            continue
        # The stream ended early (the master is settling a reconnected worker's last bytes):
        # long-poll the job for a moment rather than spinning, then follow again.
        try:
            client.wait(ref, timeout=1.0)
        except TimeoutError:
            pass


def catch_up(client: TitanClient, ref: str, cursor: LogCursor, emit: Emit) -> int:
    """Emit every line logged after the cursor, in every attempt so far; return how many."""
    count = 0
    record = client.get_job(ref)
    first = max(cursor.attempt, 1)
    for number in range(first, len(record.attempts) + 1):
        offset = cursor.offset if number == cursor.attempt else 0
        for line in client.read_logs(ref, attempt=number, offset=offset):
            emit(line)
            cursor.advance(line)
            count += 1
    return count


def tail(client: TitanClient, ref: str, lines: int) -> list[str]:
    """The last `lines` lines of the job's latest attempt ([] when it logged nothing or cannot be read)."""
    if lines <= 0:
        return []
    try:
        return [_render(line) for line in client.read_logs(ref)[-lines:]]
    except Exception:
        return []


def _render(line: LogLine) -> str:
    return f"[stderr] {line}" if line.stream == "stderr" else str(line)


def render(line: LogLine) -> str:
    """How a remote line appears in the task log: verbatim, stderr lines marked."""
    return _render(line)


def failure_message(record: JobRecord, last_lines: list[str]) -> str:
    """What the task failure says: which Titan job, how it ended, and the end of its output."""
    how = record.state
    details = []
    if record.exit_code is not None:
        details.append(f"exit code {record.exit_code}")
    if record.reason and record.reason not in details:
        details.append(record.reason)
    if details:
        how += f" ({'; '.join(details)})"
    worker = f" on worker {record.worker_name}" if record.worker_name else ""
    message = f"Titan job {record.ref} {how}{worker}."
    if last_lines:
        message += f"\nLast {len(last_lines)} line(s) of its output:\n" + "\n".join(
            "    " + line for line in last_lines
        )
    else:
        message += "\nIt printed nothing."
    message += f"\nWhole output: titan-runtime logs {record.ref}"
    return message
