"""The client API's named tokens: create, list, revoke (`titan-runtime token`). A mixin of
`TitanServicer`; policy.py admits admins to create and revoke, and every reader to list records."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from titan_runtime.master.auth import caller_of
from titan_runtime.master.tokens import NamedToken, TokenError
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.wire import to_message

if TYPE_CHECKING:
    from titan_runtime.master.api import TitanServicer

    _Base = TitanServicer
else:
    _Base = object


def token_to_pb(record: NamedToken) -> pb.TokenInfo:
    return to_message(pb.TokenInfo, record)


class TokensApi(_Base):
    #: Called with a revoked token's name: the worker link closes the sessions it admitted.
    on_revoke: Callable[[str], None] | None = None

    async def CreateToken(self, request: pb.TokenSpec, context: grpc.aio.ServicerContext) -> pb.TokenCreated:
        now = self._loop.clock()
        if request.expires_in < 0 or request.expires_in != request.expires_in:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "expires_in must be zero (never) or positive"
            )
        name = request.name or f"{request.role}-{secrets.token_hex(3)}"
        if len(request.tags) > 64 or any(len(t) > 128 or not t for t in request.tags):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "at most 64 tags of 1-128 characters")
        try:
            token, record = self._credentials.named.create(
                name,
                request.role,
                now,
                now + request.expires_in if request.expires_in else 0.0,
                request.pool,
                list(request.tags),
            )
        except TokenError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        return pb.TokenCreated(token=token, info=token_to_pb(record))

    async def ListTokens(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.TokenList:
        return pb.TokenList(tokens=[token_to_pb(t) for t in self._credentials.named.list()])

    async def WhoAmI(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.Identity:
        caller = caller_of(context, self._credentials)
        return pb.Identity(kind=caller.kind.value, name=caller.name, run_id=caller.run_id)

    async def RevokeToken(self, request: pb.TokenRef, context: grpc.aio.ServicerContext) -> pb.TokenInfo:
        try:
            record = self._credentials.named.revoke(request.name)
        except TokenError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise
        if self.on_revoke is not None:
            self.on_revoke(record.name)
        return token_to_pb(record)
