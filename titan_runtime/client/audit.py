"""Records and the operation of the audit log (`titan-runtime audit`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from titan_runtime.client.ops import Call, Op
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.wire import from_message


@dataclass
class AuditRecord:
    at: float
    who: str  # the cluster token, the submit token N, a job of run R, the join token of launch L, no token, a wrong token
    kind: str  # cluster, admin, submit, read, worker, job, join, none, wrong
    peer: str
    rpc: str
    target: str
    outcome: str  # OK or a status code (PERMISSION_DENIED, INVALID_ARGUMENT, ...)

    @classmethod
    def from_pb(cls, e: pb.AuditEntry) -> AuditRecord:
        return from_message(cls, e)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def audit(since: float = 0.0, limit: int = 0) -> Op[list[AuditRecord]]:
    response = yield Call("ListAudit", pb.AuditQuery(since=since, limit=limit))
    return [AuditRecord.from_pb(e) for e in response.entries]
