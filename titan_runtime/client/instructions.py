"""What a client operation asks its driver to do: make a call, read a stream, wait.

An operation (client/ops.py) is a generator of these; the drivers (client/drivers.py) carry them
out with blocking gRPC calls or with awaits, and send back the results.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from titan_runtime.client.errors import TitanConnectionError
from titan_runtime.client.reconnect import Reconnect

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """Make this RPC and send back its response. When it fails with TitanConnectionError, the
    driver throws the error into the operation, which may catch it and try again."""

    method: str
    request: Any
    timeout: float | None = 30.0


@dataclass(frozen=True)
class Sleep:
    """Wait this long, then resume the operation (with None): the pause before a retry, carried
    out by the driver so that the asyncio client does not block its event loop."""

    seconds: float


@dataclass(frozen=True)
class Stream:
    """Read this server stream to its end, handing each message to `sink`; resume with None.
    A TitanConnectionError is thrown into the operation as for a Call."""

    method: str
    request: Any
    sink: Callable[[Any], object]


Op = Generator[Call | Sleep | Stream, Any, T]


def idempotent(call: Call, reconnect: Reconnect | None) -> Op[Any]:
    """Make a call that may be asked twice, asking again while the master restarts (see Reconnect)."""
    outage = reconnect.outage() if reconnect is not None else None
    while True:
        try:
            return (yield call)
        except TitanConnectionError as exc:
            if outage is None:
                raise
            yield Sleep(outage.retry_in(exc))
