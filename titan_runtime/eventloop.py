"""The event loop the master and the worker run on: uvloop where it is installed, else asyncio's.

uvloop takes about a fifth off the master's and the worker's CPU per job (docs/performance.md);
`TITAN_EVENT_LOOP=asyncio` falls back to the standard loop, e.g. to rule the loop out when
chasing a bug. The whole test suite passes on both.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from titan_runtime.config import ConfigError

T = TypeVar("T")
CHOICES = ("uvloop", "asyncio")


def _use_uvloop() -> bool:
    choice = os.environ.get("TITAN_EVENT_LOOP", "uvloop").strip().lower() or "uvloop"
    if choice not in CHOICES:
        raise ConfigError(
            f"TITAN_EVENT_LOOP={choice!r} is not one of {', '.join(CHOICES)}; unset it or pick one"
        )
    if choice == "asyncio":
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:  # not installed (e.g. Windows): the standard loop does the same, a bit slower
        return False
    return True


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the chosen loop."""
    try:
        use_uvloop = _use_uvloop()
    except ConfigError:
        main.close()  # never started: no "was never awaited" warning after the one-line error
        raise
    if use_uvloop:
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop of the chosen kind, for a thread that runs its own."""
    if _use_uvloop():
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()
