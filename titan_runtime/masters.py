"""Several masters sharing one store (docs/ha.md): the address list clients and workers are given,
and how a standby's answer tells them where the leader is.

A standby listens, but accepts no call: it answers every one UNAVAILABLE, with the leader's
address (as the leader advertises it) in the `titan-leader` trailing metadata. A client or worker
told so puts the leader first in its list and asks again there. The call did nothing at the
standby, so asking again is safe for any call, a submission too.
"""

from __future__ import annotations

from collections.abc import Iterable

#: The trailing metadata key of a standby's answer: the leader's HOST:PORT ("" while none leads).
LEADER_KEY = "titan-leader"


def addresses(address: str) -> list[str]:
    """The masters of `A:9090,B:9090` (one for a plain HOST:PORT)."""
    return [part.strip() for part in address.split(",") if part.strip()]


def leader_named(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The leader's address a standby's answer names: "" while none leads, None when the answer
    is not a standby's."""
    for key, value in trailing_metadata or ():
        if key == LEADER_KEY:
            return value.decode() if isinstance(value, bytes) else value
    return None


def may_follow(leader: str, masters: list[str], tls: bool) -> bool:
    """Whether to dial the leader a standby named. One of our own masters, yes. Another address
    only over TLS (its certificate, signed by the cluster's CA, proves it is a master) or on this
    host: in plaintext, whoever answers on a master's port could send us, token and all, to any
    host of its choosing."""
    if leader in masters or tls:
        return True
    from titan_runtime.tls import is_loopback  # here: errors.py imports this module, and tls loads gRPC

    return is_loopback(leader.rpartition(":")[0].strip("[]"))


def led_by(masters: list[str], leader: str) -> list[str]:
    """`masters` with `leader` first: the order to dial them in once a standby named the leader.
    A leader the list does not hold is added (a client given only a standby's address)."""
    return [leader, *(m for m in masters if m != leader)]


class MasterList:
    """The masters a worker dials, one at a time (`--master A,B,...`)."""

    def __init__(self, address: str) -> None:
        self._masters = addresses(address)
        self._at = 0

    @property
    def current(self) -> str:
        return self._masters[self._at]

    def move_on(self, leader: str = "", tls: bool = False) -> bool:
        """The current master failed: dial the leader a standby named (see `may_follow`), else the
        next of the list. Whether the master to dial changed (not with one master and no leader)."""
        if leader and may_follow(leader, self._masters, tls):
            self._masters, self._at = led_by(self._masters, leader), 0
            return True
        if len(self._masters) == 1:
            return False
        self._at = (self._at + 1) % len(self._masters)
        return True
