"""The master's event loop: feed the core, commit what changed, then act on it.

Every mutation of `ClusterState` goes through `MasterLoop.call`/`post`. Each turn takes every
event that has arrived, applies them all, and commits what they changed in one transaction
(one fsync): while a commit runs, new events wait and form the next batch, so the commit rate
adapts to the load — group commit without a timer. Effects (assignments, cancels,
acknowledgements, waking waiters) run only after their state is committed, so nothing a client or
worker is told can be lost by a crash.

A commit is two steps: the write, inline on the event loop thread (a fraction of a millisecond;
a hand-off to a thread and back costs more in wake-ups on small machines), then the fsync. When
`before_sync` lets assignments go early, the fsync runs on a thread of its own while the event
loop sends them; otherwise inline. Everything else waits for the fsync.

Nothing a client or a worker sends can stop the loop: an event that raises fails its own caller
(or, posted, is logged with a reference), and a tick that raises is logged and the loop goes on.
The one thing it cannot go on from is a commit that fails: memory and disk would disagree, so
every waiter is failed with `StoreFailed` and the loop ends, and with it the master process.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from titan_runtime.core.cluster import ClusterState
from titan_runtime.core.effects import Changes, Effect, before_sync
from titan_runtime.core.model import Run
from titan_runtime.store import Store

log = logging.getLogger("titan.master")
T = TypeVar("T")

EffectHandler = Callable[[list[Effect], Changes], Awaitable[None]]
EvictedHandler = Callable[[list[Run]], None]
#: The longest a change nothing depends on waits to be committed with others.
LAZY_COMMIT_S = 0.1
#: A commit with this many new jobs freezes what exists out of the garbage collector's passes.
FREEZE_AFTER = 10_000


_paused = 0


@contextmanager
def collector_paused(jobs: int) -> Iterator[None]:
    """Around the conversion and acceptance of a submission of `jobs` jobs: from FREEZE_AFTER
    jobs on, no garbage collector passes while its objects are made (they were a third of a
    100,000-job submission's time, each pass walking every young object again), and what exists
    afterwards is frozen out of later passes, as the loop does after a commit of that many jobs."""
    global _paused
    if jobs < FREEZE_AFTER:
        yield
        return
    _paused += 1
    gc.disable()
    try:
        yield
    finally:
        _paused -= 1
        if not _paused:  # the last of overlapping big submissions
            gc.freeze()
            gc.enable()


class StoreFailed(RuntimeError):
    """The master's store failed a commit: the master stops (clients see UNAVAILABLE)."""


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has ended, whatever it ended with."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Notifier:
    """Wake-ups keyed by what changed (a job, a run, an attempt).

    One future per waiter and a timer for its timeout: cheaper than a task per wait, and a
    timed-out waiter never wakes the others.
    """

    def __init__(self) -> None:
        self._waiters: dict[Hashable, set[asyncio.Future[None]]] = {}

    def notify(self, keys: Any) -> None:
        for key in keys:
            for future in self._waiters.pop(key, ()):
                _wake(future)

    async def wait(self, key: Hashable, timeout: float) -> None:
        """Return when `key` is notified or after `timeout` seconds, whichever comes first."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiters = self._waiters.setdefault(key, set())
        waiters.add(future)
        timer = loop.call_later(max(timeout, 0.0), _wake, future)
        try:
            await future
        finally:
            timer.cancel()
            waiters.discard(future)
            if not waiters and self._waiters.get(key) is waiters:
                del self._waiters[key]


class MasterLoop:
    def __init__(self, state: ClusterState, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.store = store
        self.clock = clock
        self.notifier = Notifier()
        self._events: deque[tuple[Callable[[float], Any], asyncio.Future[Any] | None]] = deque()
        self._arrived: asyncio.Future[None] | None = None
        self._flush_at: float | None = None
        self._handler: EffectHandler | None = None
        self._evicted: EvictedHandler | None = None
        self._task: asyncio.Task[None] | None = None
        self._syncer: ThreadPoolExecutor | None = None
        self.failed: BaseException | None = None
        #: Told the seconds each commit's write and fsync took (metrics.py), when set.
        self.on_commit: Callable[[float], None] | None = None

    # -------------------------------------------------------------- store access

    async def in_store(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call. Inline on the loop thread: store calls never interleave."""
        return fn(*args)

    # -------------------------------------------------------------- events

    async def call(self, fn: Callable[[float], T]) -> T:
        """Apply `fn(now)` to the state; return its result once the change is committed."""
        if self.failed is not None:
            raise StoreFailed(self.stopping_message())
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._push(fn, future)
        return await future

    def post(self, fn: Callable[[float], Any]) -> None:
        """Apply `fn(now)` in order with every other event, without waiting for the commit."""
        self._push(fn, None)

    def _push(self, fn: Callable[[float], Any], future: asyncio.Future[Any] | None) -> None:
        self._events.append((fn, future))
        if self._arrived is not None:
            _wake(self._arrived)

    def stopping_message(self) -> str:
        return f"the master is stopping: its store could not be written ({self.failed})"

    def start(self, handler: EffectHandler, evicted: EvictedHandler | None = None) -> None:
        """Run the loop: `handler` carries out effects; `evicted` is given the runs that ended and
        left the core's memory (after their last commit)."""
        self._handler = handler
        self._evicted = evicted
        if self.store.syncs:
            self._syncer = ThreadPoolExecutor(1, thread_name_prefix="titan-store-sync")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="titan-master-loop")

    async def stop(self) -> None:
        """Stop applying events; what the state changed and has not committed yet is committed.

        Changes held back for a lazy commit (a delayed job becoming ready, say) have nobody to
        report them again: without this, a restart would find them undone.
        """
        await cancel_and_wait(self._task)
        if self._syncer is not None:
            self._syncer.shutdown(wait=True)  # a running fsync finishes before the store closes
            self._syncer = None
        if self.failed is None and self.state.has_changes():
            try:
                self.store.write(self.state.take_changes())
                self.store.sync()
            except Exception as exc:
                log.error("the last changes could not be written as the master stopped: %s", exc)

    async def _next_batch(self) -> list[tuple[Callable[[float], Any], asyncio.Future[Any] | None]]:
        """Every event that has arrived; waits for one, or until the core's next deadline."""
        if not self._events:
            loop = asyncio.get_running_loop()
            deadline = min(
                (d for d in (self.state.next_deadline(), self._flush_at) if d is not None), default=None
            )
            self._arrived = loop.create_future()
            timer = (
                None
                if deadline is None
                else loop.call_later(max(0.0, deadline - self.clock()), _wake, self._arrived)
            )
            try:
                await self._arrived
            finally:
                self._arrived = None
                if timer is not None:
                    timer.cancel()
        batch = list(self._events)
        self._events.clear()
        return batch

    async def _run(self) -> None:
        assert self._handler is not None
        while True:
            batch = await self._next_batch()
            now = self.clock()
            outcomes: list[tuple[asyncio.Future[Any] | None, Any, BaseException | None]] = []
            for fn, future in batch:
                try:
                    outcomes.append((future, fn(now), None))
                except Exception as exc:  # a refused event (bad input) must not stop the loop
                    if future is None:
                        log.error("an event failed (reference %s)", secrets.token_hex(4), exc_info=exc)
                    outcomes.append((future, None, exc))
            try:
                self.state.tick(now)
            except Exception as exc:
                log.error("a tick failed (reference %s); going on", secrets.token_hex(4), exc_info=exc)
            effects = self.state.take_effects()
            if not effects and all(future is None for _, future in batch) and self.state.has_changes():
                # Nothing acts on these changes and nobody waits for them (a process started, say):
                # let them join the next commit, at most LAZY_COMMIT_S from now. After a crash a
                # worker reports them again anyway.
                self._flush_at = self._flush_at or now + LAZY_COMMIT_S
                if now < self._flush_at:
                    continue
            self._flush_at = None
            changes = self.state.take_changes()
            early, effects = before_sync(effects, changes)
            try:
                began = time.perf_counter()
                if changes:
                    self.store.write(changes)
                took = time.perf_counter() - began  # the early assignments' sending is not the store's
                if early:
                    await self._carry_out(early, Changes())
                began = time.perf_counter()
                if changes and early and self._syncer is not None:  # the event loop sends them meanwhile
                    await asyncio.get_running_loop().run_in_executor(self._syncer, self.store.sync)
                elif changes:
                    self.store.sync()  # nothing to do meanwhile: a thread would only add wake-ups
                took += time.perf_counter() - began
            except Exception as exc:
                # Memory and disk now disagree: refuse to act on anything, and stop.
                self.failed = exc
                log.critical("the store could not be written, the master stops: %s", exc)
                waiting = [f for f, _, _ in outcomes] + [f for _, f in self._events]
                for future in waiting:
                    if future is not None and not future.done():
                        future.set_exception(StoreFailed(self.stopping_message()))
                self._events.clear()
                return
            if changes and self.on_commit is not None:
                self.on_commit(took)
            for future, result, exc in outcomes:
                if future is None or future.done():
                    continue
                if exc is not None:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            await self._carry_out(effects, changes)
            ended = self.state.evict_finished()
            if ended and self._evicted is not None:
                self._evicted(ended)
            if len(changes.new_jobs) >= FREEZE_AFTER:
                # The jobs of a big submission live as long as their run, and form no cycles (the
                # collector has nothing to find in them): out of its passes they go.
                gc.freeze()

    async def _carry_out(self, effects: list[Effect], changes: Changes) -> None:
        assert self._handler is not None
        try:
            await self._handler(effects, changes)
        except Exception:
            log.exception("carrying out effects failed")
