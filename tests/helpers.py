"""Test helpers live in titan_runtime.testing (benchmarks and integrations use them too); what only
tests need is here."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import grpc

from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.proto import titan_pb2_grpc as rpc
from titan_runtime.testing import PYTHON, ProcessCluster, pid_alive, wait_until

__all__ = ["PYTHON", "ProcessCluster", "hand_written_worker", "pid_alive", "wait_until"]


def hand_written_worker(address: str, token: str, hello: pb.WorkerHello) -> pb.Welcome:
    """Connect as a worker that is not one, say `hello`, and return the master's welcome (a refusal
    raises grpc.RpcError). The stream is closed after it: the master sees the worker go."""
    outbox: queue.Queue[pb.WorkerMessage | None] = queue.Queue()
    outbox.put(pb.WorkerMessage(hello=hello))

    def messages() -> Iterator[pb.WorkerMessage]:
        while (message := outbox.get()) is not None:
            yield message

    with grpc.insecure_channel(address) as channel:
        stream = rpc.WorkerLinkStub(channel).Connect(
            messages(), metadata=(("authorization", f"Bearer {token}"),), timeout=30
        )
        try:
            first = next(stream)
        finally:
            outbox.put(None)
            stream.cancel()
    assert first.HasField("welcome"), first
    return first.welcome
