"""The shape both of the master's interceptors share (guard.py, auth.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc


class HandlerInterceptor(grpc.aio.ServerInterceptor):
    """Wraps the handler of every method the server has; an unknown method passes untouched (gRPC
    answers it UNIMPLEMENTED)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return self.wrap(handler, handler_call_details)

    def wrap(self, handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        raise NotImplementedError
