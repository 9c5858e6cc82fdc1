"""What the SDK returns: plain dataclasses built from the wire, with `to_dict()` for JSON output."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.wire import from_message

TERMINAL_JOB_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "UPSTREAM_FAILED", "SKIPPED", "STOPPED"})
TERMINAL_RUN_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})

#: The original Titan's status words, and what Titan calls them now.
ORIGINAL_STATUS_WORDS = {
    "PENDING": "PENDING (waiting for parents or a delay) or READY (queued for a worker)",
    "RUNNING": "ASSIGNED or RUNNING",
    "COMPLETED": "SUCCEEDED",
    "FAILED": "FAILED or UPSTREAM_FAILED",
    "DEAD": "FAILED with a reason starting 'lost' (its worker died more often than retries.max_lost allows)",
    "CANCELLED": "CANCELLED",
}


class StatusWord(str):
    """A job's state as `get_job_status` gives it: the word, which also equals the original Titan's
    word for it where that word is not one of Titan's own (`"COMPLETED"` for SUCCEEDED), so that
    code written for the original (`while client.get_job_status(ref) != "COMPLETED"`) works.

    Words that both have (PENDING, RUNNING, FAILED, CANCELLED) compare as Titan's, exactly; see the
    table in docs/sdk.md for what the original meant by them. It hashes as the word itself: as a
    dict key, "COMPLETED" does not find it."""

    ALIASES = {"COMPLETED": "SUCCEEDED"}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str) and other in self.ALIASES:
            return str.__eq__(self, self.ALIASES[other])
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = str.__hash__


R = TypeVar("R", bound="Record")


class Record:
    """What every record does: built from its message by field name (titan_runtime/wire.py), and
    turned into a dict for JSON output. A record whose fields differ from its message's says how
    in its own `from_pb`."""

    @classmethod
    def from_pb(cls: type[R], msg: Any) -> R:
        return from_message(cls, msg)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


@dataclass
class AttemptRecord(Record):
    number: int
    id: str
    worker_id: str
    state: str
    exit_code: int | None
    signal: str
    reason: str
    assigned_at: float
    started_at: float
    ended_at: float
    pid: int
    log_size: int
    gpus: list[str] = field(default_factory=list)  # the worker's devices it was given


@dataclass
class JobRecord(Record):
    id: str
    run_id: str
    state: str
    reason: str
    attempt: int
    worker_id: str
    worker_name: str
    exit_code: int | None
    created_at: float
    ready_at: float
    started_at: float
    ended_at: float
    has_result: bool
    tags: list[str] = field(default_factory=list)
    priority: int = 1
    parents: list[str] = field(default_factory=list)
    attempts: list[AttemptRecord] = field(default_factory=list)
    kind: str = "batch"
    iteration: int = 0
    approval_message: str = ""
    decision: dict[str, Any] | None = None  # an approval gate's: decision, by, at, comment
    #: From `watch(results=True)`: an ended function task's result (JSON text), when it fitted.
    result_json: str = ""

    @property
    def ref(self) -> str:
        return f"{self.run_id}/{self.id}"

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_JOB_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "SUCCEEDED"

    @property
    def duration(self) -> float | None:
        if not self.started_at:
            return None
        return (self.ended_at or 0.0) - self.started_at if self.ended_at else None

    @classmethod
    def from_pb(cls, j: pb.JobInfo) -> JobRecord:
        return from_message(
            cls,
            j,
            attempts=[AttemptRecord.from_pb(a) for a in j.attempts],
            kind=j.kind or "batch",
            decision=json.loads(j.decision_json) if j.decision_json else None,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ref"] = self.ref
        return data


@dataclass
class RunRecord(Record):
    id: str
    name: str
    state: str
    reason: str
    labels: dict[str, str]
    agent_run_id: str
    created_at: float
    ended_at: float
    counts: dict[str, int]
    jobs: list[JobRecord] = field(default_factory=list)
    settled: bool = False  # every batch job ended, every service HEALTHY: only services keep it running
    seq: int = 0  # submission order: `list_runs(before_seq=...)` pages by it

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_RUN_STATES

    @property
    def failed_jobs(self) -> list[JobRecord]:
        return [j for j in self.jobs if j.state in ("FAILED", "UPSTREAM_FAILED")]

    @classmethod
    def from_pb(cls, r: pb.RunInfo) -> RunRecord:
        return from_message(cls, r, jobs=[JobRecord.from_pb(j) for j in r.jobs])


@dataclass
class WorkerRecord(Record):
    id: str
    name: str
    host: str
    pid: int
    tags: list[str]
    slots: int
    running: int
    cpu_percent: float
    memory_percent: float
    last_heartbeat: float
    state: str
    cpu_count: int
    memory_bytes: int
    gpus: list[str]
    version: str
    registered_at: float
    pool: str = ""  # the autoscaled pool it belongs to; "" for a worker started by hand
    provider: str = ""  # local | ssh | webhook
    launch_id: str = ""
    # Held by its running jobs, of cpu_count, memory_bytes and gpus; and how it limits memory.
    cpus_used: float = 0.0
    memory_used_mb: int = 0
    gpus_used: list[str] = field(default_factory=list)
    memory_enforcement: str = ""


@dataclass
class ArtifactRecord(Record):
    """A named artifact: published by a job of `run_id` (task.publish_artifact), or cluster-wide."""

    name: str
    run_id: str
    hash: str
    size: int


@dataclass
class WatchEvent(Record):
    """One event of `watch()`: the first is a snapshot of what was asked, the next ones what changed
    since (each job and run in its latest state; every worker when any changed, and every few
    seconds for their load). `resync`: too much changed to list; read what you show again."""

    snapshot: bool
    at: float
    runs: list[RunRecord]
    jobs: list[JobRecord]
    workers: list[WorkerRecord]
    resync: bool = False
    #: With every workers list: READY jobs waiting, by the tags they need (tags joined by ",").
    queues: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_pb(cls, e: pb.WatchEvent) -> WatchEvent:
        return cls(
            snapshot=e.snapshot,
            at=e.at,
            runs=[RunRecord.from_pb(r) for r in e.runs],
            jobs=[JobRecord.from_pb(j) for j in e.jobs],
            workers=[WorkerRecord.from_pb(w) for w in e.workers],
            resync=e.resync,
            queues={",".join(q.tags): q.jobs for q in e.queues},
        )


class LogLine(str):
    """One line of a job's output: a str (the text, invalid UTF-8 replaced by U+FFFD) that also
    knows its exact bytes and where it came from."""

    stream: str  # "stdout" or "stderr" (Titan's own notes are on stderr, with `titan` set)
    timestamp: float  # seconds since the epoch, from the worker's clock (of the line's first piece)
    offset: int  # byte offset of the line's first record in the attempt's log
    next_offset: int  # offset of the record after its last one
    attempt: int
    data: bytes  # exactly what the job wrote, without the newline
    terminated: bool  # the job ended it with a newline (False: the last line of its output, unended)
    titan: bool  # a line from Titan itself (output cut, the job could not start...)

    def __new__(
        cls,
        text: str,
        stream: str,
        timestamp: float,
        offset: int,
        next_offset: int,
        attempt: int,
        data: bytes | None = None,
        terminated: bool = True,
        titan: bool = False,
    ) -> LogLine:
        line = super().__new__(cls, text)
        line.stream = stream
        line.timestamp = timestamp
        line.offset = offset
        line.next_offset = next_offset
        line.attempt = attempt
        line.data = text.encode() if data is None else data
        line.terminated = terminated
        line.titan = titan
        return line

    @property
    def raw(self) -> bytes:
        """The line as the job wrote it: its bytes and, if it ended one, the newline."""
        return self.data + b"\n" if self.terminated else self.data


_STREAMS = {b"O": "stdout", b"o": "stdout", b"E": "stderr", b"e": "stderr", b"T": "stderr"}


class LogReader:
    """Log records back into lines, chunk after chunk (see worker/spool.py for the records).

    A line longer than the worker's record size arrives in pieces, possibly across chunks and
    with the other stream's lines in between: the reader keeps the pieces until the line ends.
    `offset` is where to ask for more after a broken stream: everything before it was read, and
    pieces of unfinished lines are kept here, so nothing is lost or repeated.
    """

    def __init__(self, attempt: int = 0, offset: int = 0) -> None:
        self.attempt = attempt
        self.offset = offset
        self._pieces: dict[str, tuple[list[bytes], float, int]] = {}

    def feed(self, chunk: pb.LogChunk) -> list[LogLine]:
        if not chunk.data:  # a follow stream opens with an empty chunk: it moves nothing
            return []
        lines = self.end() if chunk.attempt != self.attempt and self.attempt else []
        self.attempt = chunk.attempt
        offset = chunk.offset
        for record in chunk.data.split(b"\n")[:-1]:
            size = len(record) + 1
            stamp, _, rest = record.partition(b" ")
            kind, _, data = rest.partition(b" ")
            try:
                timestamp = int(stamp) / 1000.0
            except ValueError:
                timestamp = 0.0
            stream = _STREAMS.get(kind, "stdout")
            if kind in (b"o", b"e"):
                pieces, first_stamp, first_offset = self._pieces.get(stream) or ([], timestamp, offset)
                pieces.append(data)
                self._pieces[stream] = (pieces, first_stamp, first_offset)
            else:
                pieces, first_stamp, first_offset = (
                    self._pieces.pop(stream, None) if kind != b"T" else None
                ) or ([], timestamp, offset)
                lines.append(
                    self._line(
                        stream, [*pieces, data], first_stamp, first_offset, offset + size, True, kind == b"T"
                    )
                )
            offset += size
        self.offset = offset
        return lines

    def end(self) -> list[LogLine]:
        """The log is over: what is left unended are last lines without a newline."""
        lines = [
            self._line(stream, pieces, stamp, first, self.offset, False, False)
            for stream, (pieces, stamp, first) in sorted(self._pieces.items(), key=lambda kv: kv[1][2])
        ]
        self._pieces.clear()
        return lines

    def _line(
        self, stream: str, pieces: list[bytes], stamp: float, offset: int, end: int, ended: bool, titan: bool
    ) -> LogLine:
        data = b"".join(pieces)
        text = data.decode("utf-8", errors="replace")
        return LogLine(text, stream, stamp, offset, end, self.attempt, data, ended, titan)


def read_lines(chunks: Iterable[pb.LogChunk]) -> Iterator[LogLine]:
    """Every line of a finished read (unended last lines included)."""
    reader = LogReader()
    for chunk in chunks:
        yield from reader.feed(chunk)
    yield from reader.end()


@dataclass
class ServiceRecord(Record):
    """One running (or ended) instance of a service."""

    id: str  # its job id: the service id, or SERVICE.N for a replica
    service: str
    run_id: str
    worker_id: str
    worker_name: str
    host: str
    port: int
    ports: dict[str, int]
    endpoint: str  # host:port
    state: str
    restarts: int
    started_at: float
    reason: str


@dataclass
class AgentRunRecord(Record):
    """Several runs grouped by their agent_run_id: one logical agent run."""

    id: str
    state: str
    created_at: float
    runs: list[RunRecord] = field(default_factory=list)

    @classmethod
    def from_pb(cls, a: pb.AgentRunInfo) -> AgentRunRecord:
        return from_message(cls, a, runs=[RunRecord.from_pb(r) for r in a.runs])


@dataclass
class ScheduleRecord(Record):
    name: str
    dag: str
    cron: str
    catch_up: bool
    next_fire: float
    last_fire: float
    last_run_id: str
    created_at: float
    seconds: bool = False  # the cron expression has a sixth field, the seconds
