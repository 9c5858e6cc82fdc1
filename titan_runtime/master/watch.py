"""Watch streams: what changed, pushed to the few long-lived subscribers that ask (a dashboard),
instead of each of them polling the master for every browser it serves.

After each commit the server hands the hub what the commit touched (`publish`); the hub only adds
keys to each watcher's pending sets and wakes it, so a commit costs the same with or without
watchers beyond a set union. Each watcher's stream then builds one event from the state as it is
*now* (a job that changed five times since the last event is sent once, in its latest state),
and waits at least `interval` before the next: a busy run costs a watcher a few events a second,
whatever the commit rate. A watcher that falls further behind than `MAX_PENDING` jobs is told to
resync (read the state again) rather than sent an unbounded list.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from titan_runtime.core.effects import Changes

KINDS = frozenset({"runs", "jobs", "workers"})
#: Watch streams at once (a dashboard holds one or two): past it, a new one is refused.
MAX_WATCHERS = 32
#: The least time between two events of one watcher: coalescing, never delay before the first.
INTERVAL = 0.25
#: Worker load (CPU, memory, heartbeats) changes without a commit: sent this often regardless.
WORKERS_EVERY = 2.0
#: Jobs one watcher may have pending before it is told to resync instead.
MAX_PENDING = 5_000


class TooManyWatchers(Exception):
    pass


@dataclass(eq=False)
class Watcher:
    kinds: frozenset[str]
    run_id: str = ""
    runs: set[str] = field(default_factory=set)
    jobs: set[tuple[str, str]] = field(default_factory=set)
    workers: bool = False
    resync: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self) -> tuple[set[str], set[tuple[str, str]], bool, bool]:
        """What is pending, emptied: (run ids, job keys, workers changed, resync)."""
        taken = (self.runs, self.jobs, self.workers, self.resync)
        self.runs, self.jobs, self.workers, self.resync = set(), set(), False, False
        self.wake.clear()
        return taken


class WatchHub:
    def __init__(self, max_watchers: int = MAX_WATCHERS) -> None:
        self._watchers: set[Watcher] = set()
        self._max = max_watchers

    def __len__(self) -> int:
        return len(self._watchers)

    @contextlib.contextmanager
    def watching(self, kinds: frozenset[str], run_id: str = "") -> Iterator[Watcher]:
        if len(self._watchers) >= self._max:
            raise TooManyWatchers(
                f"{self._max} watch streams are open, the most a master serves; close one (a dashboard "
                "needs one per kind of data, not one per browser)"
            )
        watcher = Watcher(kinds, run_id)
        self._watchers.add(watcher)
        try:
            yield watcher
        finally:
            self._watchers.discard(watcher)

    def publish(self, changes: Changes) -> None:
        """A commit's changes: wake every watcher that asked for any of them."""
        if not self._watchers or not (changes.job_keys or changes.run_ids or changes.workers):
            return
        run_ids = changes.run_ids | {run_id for run_id, _ in changes.job_keys}
        for w in self._watchers:
            woken = False
            if "runs" in w.kinds:
                runs = run_ids if not w.run_id else run_ids & {w.run_id}
                if runs:
                    w.runs |= runs
                    woken = True
            if "jobs" in w.kinds and changes.job_keys:
                keys = changes.job_keys if not w.run_id else {k for k in changes.job_keys if k[0] == w.run_id}
                if keys:
                    if len(w.jobs) + len(keys) > MAX_PENDING:
                        w.jobs.clear()
                        w.resync = True
                    elif not w.resync:
                        w.jobs |= keys
                    woken = True
            if "workers" in w.kinds and changes.workers:
                w.workers = woken = True
            if woken:
                w.wake.set()


async def pending_events(watcher: Watcher, interval: float = INTERVAL) -> AsyncIterator[None]:
    """Yield whenever the watcher has something to send (or workers are due for a refresh), at
    most once per `interval` seconds."""
    loop = asyncio.get_running_loop()
    workers_due = loop.time() + WORKERS_EVERY
    while True:
        timeout = workers_due - loop.time() if "workers" in watcher.kinds else None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher.wake.wait(), timeout)
        if "workers" in watcher.kinds and loop.time() >= workers_due:
            watcher.workers = True
            workers_due = loop.time() + WORKERS_EVERY
        yield
        await asyncio.sleep(interval)  # rate, not synchronisation: what arrives meanwhile joins the next
