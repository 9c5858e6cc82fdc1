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


#: A collection that catches up with months of history deletes a batch at a time: it may take minutes.
COLLECT_TIMEOUT = 3600.0


def collect_garbage(dry_run: bool = False) -> Op[GcReportRecord]:
    request = pb.GcRequest(dry_run=dry_run)
    return GcReportRecord.from_pb((yield Call("CollectGarbage", request, timeout=COLLECT_TIMEOUT)))


def delete_run(run_id: str) -> Op[GcReportRecord]:
    return GcReportRecord.from_pb((yield Call("DeleteRun", pb.RunRef(run_id=run_id))))
