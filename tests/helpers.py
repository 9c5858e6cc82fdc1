"""Test helpers live in titan_runtime.testing (benchmarks and integrations use them too); what only
tests need is here."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import grpc
import yaml

from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.proto import titan_pb2_grpc as rpc
from titan_runtime.testing import PYTHON, ProcessCluster, pid_alive, wait_until

__all__ = [
    "PYTHON",
    "HandWrittenWorker",
    "ProcessCluster",
    "hand_written_worker",
    "pid_alive",
    "start_leader_and_standby",
    "wait_until",
    "webhook_cluster_file",
]


class HandWrittenWorker:
    """A worker that is not one: says `hello`, then sends and receives what a test makes it.
    `welcome` is the master's answer; a refusal raises grpc.RpcError from the constructor."""

    def __init__(self, address: str, token: str, hello: pb.WorkerHello) -> None:
        self._outbox: queue.Queue[pb.WorkerMessage | None] = queue.Queue()
        self._outbox.put(pb.WorkerMessage(hello=hello))
        self._channel = grpc.insecure_channel(address)
        self._stream = rpc.WorkerLinkStub(self._channel).Connect(
            self._messages(), metadata=(("authorization", f"Bearer {token}"),), timeout=60
        )
        try:
            first = next(self._stream)
        except BaseException:
            self.close()
            raise
        assert first.HasField("welcome"), first
        self.welcome: pb.Welcome = first.welcome

    def _messages(self) -> Iterator[pb.WorkerMessage]:
        while (message := self._outbox.get()) is not None:
            yield message

    def send(self, message: pb.WorkerMessage) -> None:
        self._outbox.put(message)

    def assignment(self) -> pb.Assignment:
        """The next job the master assigns to it."""
        for message in self._stream:
            if message.assign:
                return message.assign[0]
        raise AssertionError("the stream ended without an assignment")

    def close(self) -> None:
        self._outbox.put(None)
        self._stream.cancel()
        self._channel.close()

    def __enter__(self) -> HandWrittenWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hand_written_worker(address: str, token: str, hello: pb.WorkerHello) -> pb.Welcome:
    """Connect as a worker that is not one, say `hello`, and return the master's welcome (a refusal
    raises grpc.RpcError). The stream is closed after it: the master sees the worker go."""
    with HandWrittenWorker(address, token, hello) as worker:
        return worker.welcome


def webhook_cluster_file(directory: Path, url: str, secret: str, **pool: object) -> Path:
    """A cluster file with one webhook pool, `cloud` (tags [cloudy], at most one worker), posting
    to `url` (plain http allowed: tests listen on 127.0.0.1), its secret in a file beside it;
    `pool` adds or overrides settings."""
    (directory / "webhook.secret").write_text(secret + "\n")
    settings = {
        "name": "cloud",
        "provider": "webhook",
        "url": url,
        "allow_http": True,
        "secret_file": "webhook.secret",
        "tags": ["cloudy"],
        "max": 1,
        **pool,
    }
    path = directory / "cluster.yaml"
    path.write_text(yaml.safe_dump({"autoscaler": {"interval": 0.1}, "pools": [settings]}))
    return path


def start_leader_and_standby(a: ProcessCluster, b: ProcessCluster) -> str:
    """Start master a, then b as its standby (the `standby_masters` fixture's two); both
    addresses, for workers and clients."""
    a.start_master()
    b.start_master(wait=False)
    wait_until(lambda: "standby: the master" in b.master_log(), 30, what="b to wait as a standby")
    assert not (b.data_dir / "master.json").exists()  # a standby serves no work
    return f"127.0.0.1:{a.port},127.0.0.1:{b.port}"
