"""The two drivers of client operations, and the one way an operation becomes a method of both.

An operation (client/ops.py) is a generator of instructions. `BlockingDriver` carries them out
with blocking gRPC calls, `AsyncDriver` with awaits; nothing else differs between `TitanClient`
and `AsyncTitanClient`. A method is written once, as a generator method decorated with
`@operation` (client/calls.py), and each client inherits it: on a blocking client the call
returns the operation's result, on an asyncio client an awaitable of it. The descriptor's
overloads say so to type checkers, so both clients keep exact signatures in an editor.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import grpc

from titan_runtime import config, masters
from titan_runtime.client.errors import TitanConnectionError, TitanError, error_from_rpc
from titan_runtime.client.instructions import Call, Op, Sleep, Stream
from titan_runtime.client.reconnect import Reconnect
from titan_runtime.client.specs import UploadCache
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.tls import channel, client_tls

P = ParamSpec("P")
T = TypeVar("T")

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # A restarted master is reachable again within a second, not after gRPC's default backoff (1 s to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


#: Channels a client keeps open after a standby answered on them (a few per failover).
MAX_RETIRED = 4
_closing: set[asyncio.Task[None]] = set()


class Driver:
    """What both drivers hold: where the master is, how to prove who we are, and what we uploaded."""

    _aio = False

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        data_dir: str | None = None,
        reconnect_timeout: float | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        self.address = config.address(address, data_dir)
        self._reconnect = Reconnect(self.address, config.reconnect_timeout(reconnect_timeout))
        self._token = config.token(token, data_dir)
        self._metadata = (("authorization", f"Bearer {self._token}"),) if self._token else ()
        self.tls = client_tls(tls_ca, tls_cert, tls_key)
        #: The masters in the order they are dialled: the leader first once a standby named it.
        self._masters = masters.addresses(self.address)
        self._channel: Any = None
        self._retired: list[Any] = []  # channels a standby answered on, closed with the client
        self._methods: dict[str, Any] = {}
        self._uploads = UploadCache()

    def _rpc(self, method: str) -> tuple[Any, Any]:
        """The callable of one of the service's methods, and the channel it calls on. The channel
        opens at the first call, not in the constructor: an asyncio channel belongs to the event
        loop it is made in, and a client may be made before its loop runs."""
        on = self._channel
        found = self._methods.get(method)
        if found is None or on is None:
            if on is None:
                on = self._channel = channel(
                    ",".join(self._masters), self.tls, CHANNEL_OPTIONS, aio=self._aio
                )
                self._methods = {}
            found = self._methods[method] = method_callable(on, method)
        return found, on

    def _failed(self, exc: grpc.RpcError, on: Any, follow: bool = True) -> tuple[TitanError, bool]:
        """The error a call on channel `on` ended with, and (with `follow`) whether to ask again at
        once: a standby answered, naming the leader, which is dialled from now on (`_follow`)."""
        error = error_from_rpc(exc, self.address)
        return error, follow and isinstance(error, TitanConnectionError) and self._follow(error, on)

    def _follow(self, error: TitanConnectionError, used: Any) -> bool:
        """A standby answered (on channel `used`): dial the leader it named first, on a new channel
        (gRPC would keep the standby's connection). Whether to ask again at once: the standby did
        nothing with the call, so even a submission may be repeated."""
        leader = error.leader
        if leader is None:
            return False
        self._reconnect.answered()  # a master of this cluster answered: a failover is ridden out
        if not leader or not masters.may_follow(leader, self._masters, self.tls is not None):
            return False  # nobody leads at this moment (the caller's retries wait for one), or not there
        if self._channel is used:
            self._masters = masters.led_by(self._masters, leader)
            self._retired.append(used)
            self._channel = None
            if len(self._retired) > MAX_RETIRED:  # calls on it were a standby's, answered long since
                self._close(self._retired.pop(0))
        return True

    def _close(self, old: Any) -> None:
        raise NotImplementedError

    def _channels(self) -> list[Any]:
        """Every channel this client opened (to close them)."""
        return [*self._retired, *([self._channel] if self._channel is not None else [])]


#: The Titan service as its descriptor declares it. The client makes each method's callable on its
#: first call, from the descriptor, instead of through the generated stub: importing the stub's
#: module (every method of the servicer and the stub) costs more than a CLI command's own work, and
#: the stub makes all 44 callables for every client.
_TITAN = pb.DESCRIPTOR.services_by_name["Titan"]
_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def method_callable(on: Any, name: str) -> Any:
    """What `TitanStub(on).<name>` would be: the multi-callable of method `name` on channel `on`."""
    method = _TITAN.methods_by_name[name]
    request, response = getattr(pb, method.input_type.name), getattr(pb, method.output_type.name)
    return getattr(on, _KINDS[2 * method.client_streaming + method.server_streaming])(
        f"/{_TITAN.full_name}/{name}",
        request_serializer=request.SerializeToString,
        response_deserializer=response.FromString,
        _registered_method=True,
    )


class BlockingDriver(Driver):
    def _close(self, old: Any) -> None:
        old.close()

    def _run(self, op: Op[T]) -> T:
        """Carry out an operation's instructions; a lost connection is thrown into it to decide."""
        try:
            step = next(op)
            while True:
                try:
                    if isinstance(step, Sleep):
                        time.sleep(step.seconds)
                        response = None
                    elif isinstance(step, Stream):
                        for item in self._stream(step.method, step.request):
                            step.sink(item)
                        response = None
                    else:
                        response = self._invoke(step)
                except TitanConnectionError as exc:
                    error = exc
                else:
                    step = op.send(response)
                    continue
                step = op.throw(error)
        except StopIteration as stop:
            return stop.value
        finally:
            op.close()  # an operation interrupted by anything else cleans up now (a partial download)

    def _invoke(self, call: Call, again: bool = True) -> Any:
        rpc, on = self._rpc(call.method)
        try:
            response = rpc(call.request, metadata=self._metadata, timeout=call.timeout)
        except grpc.RpcError as exc:
            error, ask_again = self._failed(exc, on, follow=again)
            if ask_again:
                return self._invoke(call, again=False)
            raise error from None
        self._reconnect.answered()
        return response

    def _stream(self, method: str, request: Any) -> Iterator[Any]:
        rpc, on = self._rpc(method)
        try:
            yield from rpc(request, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._failed(exc, on)[0] from None  # the operation asks again, as after any lost stream


class AsyncDriver(Driver):
    _aio = True

    def _close(self, old: Any) -> None:
        task = asyncio.get_running_loop().create_task(old.close())
        _closing.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(_closing.discard)

    async def _run(self, op: Op[T]) -> T:
        """`BlockingDriver._run` with awaits: the same operations, the same retries."""
        try:
            step = next(op)
            while True:
                try:
                    if isinstance(step, Sleep):
                        await asyncio.sleep(step.seconds)
                        response = None
                    elif isinstance(step, Stream):
                        async for item in self._stream(step.method, step.request):
                            step.sink(item)
                        response = None
                    else:
                        response = await self._invoke(step)
                except TitanConnectionError as exc:
                    error = exc
                else:
                    step = op.send(response)
                    continue
                step = op.throw(error)
        except StopIteration as stop:
            return stop.value
        finally:
            op.close()  # an operation interrupted by anything else cleans up now (a partial download)

    async def _invoke(self, call: Call, again: bool = True) -> Any:
        rpc, on = self._rpc(call.method)
        try:
            response = await rpc(call.request, metadata=self._metadata, timeout=call.timeout)
        except grpc.RpcError as exc:
            error, ask_again = self._failed(exc, on, follow=again)
            if ask_again:
                return await self._invoke(call, again=False)
            raise error from None
        self._reconnect.answered()
        return response

    async def _stream(self, method: str, request: Any) -> AsyncIterator[Any]:
        rpc, on = self._rpc(method)
        try:
            async for item in rpc(request, metadata=self._metadata):
                yield item
        except grpc.RpcError as exc:
            raise self._failed(exc, on)[0] from None  # the operation asks again, as after any lost stream


class operation(Generic[P, T]):
    """A method written once as an operation: it returns its result on a blocking client and an
    awaitable of it on an asyncio client (whatever object's `_run` drives it)."""

    def __init__(self, build: Callable[Concatenate[Any, P], Op[T]]) -> None:
        self.build = build
        functools.update_wrapper(self, build)  # type: ignore[arg-type]

    @overload
    def __get__(self, obj: None, owner: type) -> Callable[Concatenate[Any, P], Op[T]]: ...
    @overload
    def __get__(self, obj: BlockingDriver | Blocking, owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: AsyncDriver | Awaiting, owner: type) -> Callable[P, Awaitable[T]]: ...

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self.build  # help() and the docs see the function, its signature and docstring
        build = self.build

        @functools.wraps(build)
        def method(*args: Any, **kwargs: Any) -> Any:
            return obj._run(build(obj, *args, **kwargs))

        return method


class Blocking:
    """Marks a handle (such as a Run) whose operations a blocking client drives."""


class Awaiting:
    """Marks a handle whose operations an asyncio client drives."""
