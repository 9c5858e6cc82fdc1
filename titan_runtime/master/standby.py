"""What a standby master serves while it waits for the leader's lease: every call answered
UNAVAILABLE, naming the leader, so that a client or worker that dialled it goes there instead
(titan_runtime/masters.py says how they follow).

The standby accepts nothing: it reads no request (a handler that answers before reading, so a
large request costs it no more than HTTP/2's flow-control window), authenticates nobody, and says
only that it is a standby and where the leader listens, which anyone who can reach its port could
learn by trying the other masters. Once it holds the lease it stops this server and starts the
real one on the same port.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from titan_runtime.masters import LEADER_KEY

#: Concurrent calls a standby's connections may hold: each is answered at once.
MAX_STREAMS = 16


class _AnswerEveryCall(grpc.GenericRpcHandler):
    def __init__(self, leader: Callable[[], str]) -> None:
        self._leader = leader

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler:
        leader = self._leader

        async def answer(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            where = leader()
            context.set_trailing_metadata(((LEADER_KEY, where),))
            said = f"the leader is at {where}" if where else "no master leads at this moment: ask again"
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"this Titan master is a standby (it takes over when the leader's lease runs out); {said}",
            )
            yield  # never reached: makes this an async generator, as a stream handler is

        return grpc.stream_stream_rpc_method_handler(answer)


class StandbyServer:
    """A gRPC server on the master's port that answers every call with where the leader is."""

    def __init__(self, leader: Callable[[], str]) -> None:
        self._server = grpc.aio.server(
            handlers=[_AnswerEveryCall(leader)],
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_concurrent_streams", MAX_STREAMS),
                ("grpc.max_receive_message_length", 4096),
            ],
        )

    def bind(self, target: str, credentials: grpc.ServerCredentials | None) -> int:
        """Listen on HOST:PORT (TLS with `credentials`): the port bound, 0 if it could not be."""
        try:
            if credentials is not None:
                return self._server.add_secure_port(target, credentials)
            return self._server.add_insecure_port(target)
        except RuntimeError:
            return 0

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        """Stop; calls are answered as they come, so none is left to finish. With a grace period
        all the same: stopping without one cancels the connections, which their clients log."""
        await self._server.stop(0.5)
