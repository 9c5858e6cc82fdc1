"""Records and operations of retention (`titan-runtime gc`, `runs delete`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from titan_runtime.client.instructions import Call, Op
from titan_runtime.client.records import Record
from titan_runtime.proto import titan_pb2 as pb


@dataclass
class GcReportRecord(Record):
    """What a collection deleted, or with dry_run would delete."""

    runs: int
    kv_keys: int
    log_files: int
    log_bytes: int
    artifacts: int
    artifact_bytes: int
    run_ids: list[str] = field(default_factory=list)  # the first 100 runs
    dry_run: bool = False


def collect_garbage(dry_run: bool = False) -> Op[GcReportRecord]:
    return GcReportRecord.from_pb((yield Call("CollectGarbage", pb.GcRequest(dry_run=dry_run))))


def delete_run(run_id: str) -> Op[GcReportRecord]:
    return GcReportRecord.from_pb((yield Call("DeleteRun", pb.RunRef(run_id=run_id))))
