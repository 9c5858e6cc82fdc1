"""Records and operations of the autoscaler API (`titan-runtime autoscaler status|events`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from titan_runtime.client.instructions import Call, Op
from titan_runtime.client.records import Record
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.wire import from_message


@dataclass
class PoolRecord(Record):
    name: str
    provider: str
    tags: list[str]
    slots: int
    min: int
    max: int
    idle_timeout: float
    workers: int  # registered and not draining
    launching: int  # started, not registered yet
    draining: int
    waiting_jobs: int  # queued jobs the last decision wanted this pool to take
    failures: int  # failed launches in a row
    backoff_until: float
    note: str  # why it cannot grow right now
    cpus: str = ""  # what each of its workers will offer ("": not declared)
    memory: str = ""
    gpus: list[str] = field(default_factory=list)
    declares_gpus: bool = False  # False: gpus unknown (the pool serves no job asking for one)


@dataclass
class AutoscalerStatusRecord(Record):
    enabled: bool
    interval: float = 0.0
    pools: list[PoolRecord] = field(default_factory=list)
    unserved: list[list[str]] = field(default_factory=list)  # tag sets no pool serves
    unserved_reasons: list[str] = field(default_factory=list)  # for each kind of job no pool takes, why

    @classmethod
    def from_pb(cls, s: pb.AutoscalerStatus) -> AutoscalerStatusRecord:
        return from_message(
            cls,
            s,
            pools=[PoolRecord.from_pb(p) for p in s.pools],
            unserved=[list(t.tags) for t in s.unserved],
        )


@dataclass
class ScaleEventRecord(Record):
    at: float
    pool: str
    kind: str
    message: str
    launch_id: str
    worker: str


def autoscaler_status() -> Op[AutoscalerStatusRecord]:
    return AutoscalerStatusRecord.from_pb((yield Call("GetAutoscalerStatus", pb.Empty())))


def autoscaler_events(limit: int = 0, pool: str = "") -> Op[list[ScaleEventRecord]]:
    response = yield Call("ListAutoscalerEvents", pb.AutoscalerEventsRequest(limit=limit, pool=pool))
    return [ScaleEventRecord.from_pb(e) for e in response.events]
