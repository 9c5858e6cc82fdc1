"""The shape the master's interceptors share (guard.py, auth.py), and the one that sees how every
call ended (for metrics)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

#: Told the method's name ("SubmitRun") and the name of the status code a call ended with ("OK").
CallEnded = Callable[[str, str], None]


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


def _code(context: grpc.aio.ServicerContext, default: str) -> str:
    """The code the call set (abort, set_code); gRPC leaves it None for OK."""
    code = context.code()
    return code.name if code is not None else default


def _observed_unary(behavior: Callable[..., Awaitable[Any]], method: str, ended: CallEnded) -> Any:
    async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
        outcome = "CANCELLED"  # the client went away, or its deadline passed: the task is cancelled
        try:
            response = await behavior(request, context)
            outcome = _code(context, "OK")
            return response
        except grpc.aio.AbortError:
            outcome = _code(context, "UNKNOWN")
            raise
        except asyncio.CancelledError:
            raise
        except Exception:  # what gRPC answers a handler's exception with
            outcome = "UNKNOWN"
            raise
        finally:
            ended(method, outcome)

    return observed


def _observed_stream(behavior: Callable[..., Any], method: str, ended: CallEnded) -> Any:
    async def observed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        outcome = "CANCELLED"  # also when gRPC closes the generator early (the client went away)
        try:
            responses = behavior(request, context)
            if inspect.isawaitable(responses):  # a coroutine handler, not a generator
                responses = await responses
            if responses is not None:
                async for item in responses:
                    yield item
            outcome = _code(context, "OK")
        except grpc.aio.AbortError:
            outcome = _code(context, "UNKNOWN")
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            outcome = "UNKNOWN"
            raise
        finally:
            ended(method, outcome)

    return observed


class StatusInterceptor(HandlerInterceptor):
    """Tells `ended(method, code)` once per call, when it is over, with the status it ended with.

    Put it first (outermost): then it sees the statuses the guard turns exceptions into and the
    auth interceptor's refusals. Streams count when they end, however long they ran. Costs a
    wrapper and one call of `ended` per RPC, as the other interceptors do."""

    def __init__(self, ended: CallEnded) -> None:
        self._ended = ended

    def wrap(
        self, handler: grpc.RpcMethodHandler, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method.rsplit("/", 1)[-1]
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        ended = self._ended
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _observed_unary(handler.unary_unary, method, ended), **kwargs
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _observed_unary(handler.stream_unary, method, ended), **kwargs
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _observed_stream(handler.unary_stream, method, ended), **kwargs
            )
        return grpc.stream_stream_rpc_method_handler(
            _observed_stream(handler.stream_stream, method, ended), **kwargs
        )
