"""Records and operations of named tokens (`titan-runtime token`, docs/security.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from titan_runtime.client.ops import Call, Op
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.wire import from_message


@dataclass
class TokenRecord:
    """What the master keeps of a named token: never the token itself."""

    name: str
    role: str  # admin, submit, read, worker
    created_at: float
    expires_at: float  # 0: never
    pool: str = ""
    tags: list[str] = field(default_factory=list)

    @classmethod
    def from_pb(cls, info: pb.TokenInfo) -> TokenRecord:
        return from_message(cls, info)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
