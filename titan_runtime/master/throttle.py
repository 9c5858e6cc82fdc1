"""Failed authentications, counted per peer host: each one after the first few is answered later,
so guessing a token from one place gets slower and slower, and the guessing shows in the log.

Sans-IO: `failed(peer, now)` says how long to wait before answering and whether to log; the
interceptor sleeps (without holding the event loop) and logs.
"""

from __future__ import annotations

from dataclasses import dataclass

from titan_runtime.config import peer_host

#: Failures answered at once (a mistyped token, a client retrying with an old one).
FREE = 3
FIRST_DELAY = 0.1  # seconds, doubled at each further failure
MAX_DELAY = 5.0
#: A peer with no failure for this long starts again from nothing.
FORGET_AFTER = 60.0
#: Peers remembered at most: past it, the quietest are forgotten (a bounded table, whatever comes).
MAX_PEERS = 10_000


@dataclass
class _Record:
    count: int
    last: float


@dataclass(frozen=True)
class Verdict:
    delay: float  # seconds to wait before answering
    count: int  # failures in a row from this host, this one included
    log: bool  # the first failure and every tenth are logged


class AuthFailures:
    """`max_delay`: the longest wait (0: answer at once, only log)."""

    def __init__(self, max_delay: float = MAX_DELAY) -> None:
        self.max_delay = max_delay
        self._peers: dict[str, _Record] = {}

    def failed(self, peer: str, now: float) -> Verdict:
        host = peer_host(peer)
        record = self._peers.pop(host, None)  # re-inserted last: the dict's order is recency
        if record is None or now - record.last > FORGET_AFTER:
            record = _Record(0, now)
        record.count += 1
        record.last = now
        self._peers[host] = record
        while len(self._peers) > MAX_PEERS:
            del self._peers[next(iter(self._peers))]
        over = record.count - FREE
        delay = 0.0 if over <= 0 else min(self.max_delay, FIRST_DELAY * 2 ** (over - 1))
        return Verdict(delay, record.count, record.count == 1 or record.count % 10 == 0)
