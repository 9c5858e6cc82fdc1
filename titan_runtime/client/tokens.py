"""Records and operations of named tokens (`titan-runtime token`, docs/security.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from titan_runtime.client.instructions import Call, Op
from titan_runtime.client.records import Record
from titan_runtime.proto import titan_pb2 as pb


@dataclass
class TokenRecord(Record):
    """What the master keeps of a named token: never the token itself."""

    name: str
    role: str  # admin, submit, read, worker
    created_at: float
    expires_at: float  # 0: never
    pool: str = ""
    tags: list[str] = field(default_factory=list)


@dataclass
class IdentityRecord(Record):
    """Who the master takes this client's credential for."""

    kind: str  # cluster, admin, submit, read, worker, job
    name: str = ""  # a named token's name
    run_id: str = ""  # a job credential's run


def whoami() -> Op[IdentityRecord]:
    return IdentityRecord.from_pb((yield Call("WhoAmI", pb.Empty())))


def create_token(
    role: str, name: str = "", expires_in: float = 0.0, pool: str = "", tags: list[str] | None = None
) -> Op[tuple[str, TokenRecord]]:
    request = pb.TokenSpec(name=name, role=role, expires_in=expires_in, pool=pool, tags=tags or [])
    response = yield Call("CreateToken", request)
    return response.token, TokenRecord.from_pb(response.info)


def list_tokens() -> Op[list[TokenRecord]]:
    response = yield Call("ListTokens", pb.Empty())
    return [TokenRecord.from_pb(t) for t in response.tokens]


def revoke_token(name: str) -> Op[TokenRecord]:
    response = yield Call("RevokeToken", pb.TokenRef(name=name))
    return TokenRecord.from_pb(response)
