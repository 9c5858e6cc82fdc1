"""Every RPC handler runs behind this guard: no request can take more than itself down.

A handler that raises something it did not mean to fails its own request with INTERNAL and a
reference the master's log repeats next to the traceback, so a user can report it and an operator
can find it. The refusals the handlers and the core mean (a bad spec, an unknown id, a full disk, a
master whose store failed) become the status codes that say so, wherever they are raised.

A status message travels in an HTTP/2 header, which a client refuses past 8 KB (and then reports
a stream error instead of the message): whatever a message quotes of the request, it is cut to
MAX_DETAILS bytes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from titan_runtime.core.cluster import NotFound, NotYours
from titan_runtime.core.model import InvalidSpec
from titan_runtime.master.audit import AuditLog
from titan_runtime.master.errors import RequestError
from titan_runtime.master.interceptor import HandlerInterceptor
from titan_runtime.master.loop import StoreFailed
from titan_runtime.store import StoreFull

log = logging.getLogger("titan.master")

#: Bytes of a status message (non-ASCII bytes travel as three characters each).
MAX_DETAILS = 1000


def bounded(details: str) -> str:
    data = details.encode()
    if len(data) <= MAX_DETAILS:
        return details
    return data[:MAX_DETAILS].decode(errors="ignore") + f"... ({len(data):,} bytes in all)"


class _Context:
    """The handler's context, with messages bounded however the handler aborts, and the code it
    aborted with remembered (for the audit log)."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context
        self.aborted = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        self.aborted = code.name
        await self._context.abort(code, bounded(details), trailing_metadata)


def status_of(exc: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    """The status a failed request leaves with, and its message."""
    if isinstance(exc, RequestError):
        return exc.code, str(exc)
    if isinstance(exc, InvalidSpec):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, NotFound):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, NotYours):
        return grpc.StatusCode.PERMISSION_DENIED, str(exc)
    if isinstance(exc, StoreFull):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, f"the master's disk is full: {exc}"
    if isinstance(exc, StoreFailed):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    reference = secrets.token_hex(4)
    log.error("internal error %s in %s", reference, method, exc_info=exc)
    return (
        grpc.StatusCode.INTERNAL,
        f"internal error in the master (reference {reference}); its log has the details",
    )


def _unary(
    behavior: Callable[..., Awaitable[Any]], method: str, audit: AuditLog | None
) -> Callable[..., Awaitable[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        context = _Context(context)
        outcome = "OK"
        try:
            return await behavior(request, context)
        except asyncio.CancelledError:
            outcome = "CANCELLED"
            raise
        except grpc.aio.AbortError:
            outcome = context.aborted or "ABORTED"
            raise
        except Exception as exc:
            status = status_of(exc, method)
            outcome = status[0].name
            await context.abort(*status)
        finally:
            if audit is not None and audit.wants(method, request):
                audit.record(method, context.invocation_metadata(), context.peer(), request, outcome)

    return guarded


def _streaming(behavior: Callable[..., Any], method: str) -> Callable[..., AsyncIterator[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        context = _Context(context)
        try:
            responses = behavior(request, context)
            if inspect.isawaitable(responses):  # a coroutine (one that aborts, say), not a generator
                responses = await responses
            if responses is not None:
                async for item in responses:
                    yield item
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            await context.abort(*status_of(exc, method))

    return guarded


class GuardInterceptor(HandlerInterceptor):
    """Outermost: whatever happens inside a call, it leaves with a status; with `audit`, every
    call that changes something is recorded once it is over, refused ones included."""

    def __init__(self, audit: AuditLog | None = None) -> None:
        self._audit = audit

    def wrap(
        self, handler: grpc.RpcMethodHandler, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary, method, self._audit), **kwargs
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _unary(handler.stream_unary, method, self._audit), **kwargs
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(_streaming(handler.unary_stream, method), **kwargs)
        return grpc.stream_stream_rpc_method_handler(_streaming(handler.stream_stream, method), **kwargs)
