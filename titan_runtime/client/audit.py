"""Records and the operation of the audit log (`titan-runtime audit`)."""

from __future__ import annotations

from dataclasses import dataclass

from titan_runtime.client.instructions import Call, Op
from titan_runtime.client.records import Record
from titan_runtime.proto import titan_pb2 as pb


@dataclass
class AuditRecord(Record):
    at: float
    who: str  # the cluster token, the submit token N, a job of run R, the join token of launch L, no token, a wrong token
    kind: str  # cluster, admin, submit, read, worker, job, join, none, wrong
    peer: str
    rpc: str
    target: str
    outcome: str  # OK or a status code (PERMISSION_DENIED, INVALID_ARGUMENT, ...)


def audit(since: float = 0.0, limit: int = 0) -> Op[list[AuditRecord]]:
    response = yield Call("ListAudit", pb.AuditQuery(since=since, limit=limit))
    return [AuditRecord.from_pb(e) for e in response.entries]
