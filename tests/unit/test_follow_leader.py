"""A client told by a standby where the leader is: it dials the leader first, on a new channel,
and asks again once; a plaintext client is not sent to a host it was not given."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from titan_runtime import TitanClient, TitanConnectionError
from titan_runtime.client import drivers
from titan_runtime.masters import LEADER_KEY
from titan_runtime.proto import titan_pb2 as pb


class StandbyAnswer(grpc.RpcError):
    def __init__(self, leader: str) -> None:
        self._leader = leader

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return f"this Titan master is a standby; the leader is at {self._leader}"

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((LEADER_KEY, self._leader),)


class FakeChannel:
    """A channel to `target` (masters in dialling order): only the leader answers, if it `leads`."""

    def __init__(self, target: str, leader: str, leads: bool, calls: list[str]) -> None:
        self.target, self.leader, self.leads, self.calls, self.closed = target, leader, leads, calls, False

    def unary_unary(self, path: str, **_: Any) -> Any:
        def call(request: Any, metadata: Any = None, timeout: Any = None) -> Any:
            first = self.target.split(",")[0]
            self.calls.append(first)
            if first != self.leader or not self.leads:
                raise StandbyAnswer(self.leader)
            return pb.ListWorkersResponse()

        return call

    def close(self) -> None:
        self.closed = True


def client_with(
    monkeypatch: pytest.MonkeyPatch, address: str, leader: str, leads: bool = True
) -> tuple[TitanClient, list[FakeChannel], list[str]]:
    """A client whose channels are fakes: it, the channels it opened, the masters it called."""
    opened: list[FakeChannel] = []
    calls: list[str] = []

    def channel(target: str, tls: Any, options: Any, aio: bool = False) -> FakeChannel:
        opened.append(FakeChannel(target, leader, leads, calls))
        return opened[-1]

    monkeypatch.setattr(drivers, "channel", channel)
    return TitanClient(address=address, token="t", reconnect_timeout=0), opened, calls


def test_a_client_given_only_a_standby_asks_the_leader_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    client, opened, calls = client_with(monkeypatch, "127.0.0.1:2", leader="127.0.0.1:1")
    assert client.list_workers() == []
    assert calls == ["127.0.0.1:2", "127.0.0.1:1"]  # asked again once, at the leader
    assert [c.target for c in opened] == ["127.0.0.1:2", "127.0.0.1:1,127.0.0.1:2"]
    assert client.list_workers() == [] and len(opened) == 2  # the leader's channel is kept
    client.close()
    assert all(c.closed for c in opened)


def test_a_plaintext_client_is_not_sent_to_a_host_it_was_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    client, opened, calls = client_with(monkeypatch, "10.0.0.1:9090", leader="10.0.0.66:9090")
    with pytest.raises(TitanConnectionError, match="standby") as raised:
        client.list_workers()
    assert raised.value.leader == "10.0.0.66:9090"
    assert calls == ["10.0.0.1:9090"] and len(opened) == 1


def test_a_client_keeps_few_channels_a_standby_answered_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The leader a standby names is down (a failover under way): every answer opens a channel."""
    client, opened, _ = client_with(monkeypatch, "127.0.0.1:2", leader="127.0.0.1:1", leads=False)
    for _ in range(10):
        with pytest.raises(TitanConnectionError, match="standby"):
            client.list_workers()
    assert len(opened) == 11  # one per call, on which it asked again
    assert sum(not c.closed for c in opened) == drivers.MAX_RETIRED + 1
    client.close()
    assert all(c.closed for c in opened)
