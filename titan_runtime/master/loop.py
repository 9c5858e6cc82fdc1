"""The master's event loop: feed the core, commit what changed, then act on it.

Every mutation of `ClusterState` goes through `MasterLoop.call`/`post`. Events that arrive while
a commit is in flight queue up and go into the next batch, so one transaction (one fsync) covers
as many transitions as arrived meanwhile: group commit without a timer. Effects (assignments,
cancels, acknowledgements, waking waiters) run only after their state is durable, so nothing a
client or worker is told can be lost by a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from titan_runtime.core.cluster import ClusterState
from titan_runtime.core.effects import Changes, Effect
from titan_runtime.store import Store

log = logging.getLogger("titan.master")
T = TypeVar("T")

EffectHandler = Callable[[list[Effect], Changes], Awaitable[None]]


class Notifier:
    """Wake-ups keyed by what changed (a job, a run, an attempt)."""

    def __init__(self) -> None:
        self._events: dict[Hashable, asyncio.Event] = {}

    def notify(self, keys: Any) -> None:
        for key in keys:
            event = self._events.pop(key, None)
            if event is not None:
                event.set()

    async def wait(self, key: Hashable, timeout: float) -> None:
        event = self._events.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), max(timeout, 0.0))
        except asyncio.TimeoutError:
            pass


class MasterLoop:
    def __init__(self, state: ClusterState, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.store = store
        self.clock = clock
        self.notifier = Notifier()
        self._queue: asyncio.Queue[tuple[Callable[[float], Any], asyncio.Future[Any] | None]] = (
            asyncio.Queue()
        )
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="titan-store")
        self._handler: EffectHandler | None = None
        self._task: asyncio.Task[None] | None = None
        self.failed: BaseException | None = None

    # -------------------------------------------------------------- store access

    async def in_store(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the store's thread (all store calls are serialised there)."""
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, fn, *args)

    # -------------------------------------------------------------- events

    async def call(self, fn: Callable[[float], T]) -> T:
        """Apply `fn(now)` to the state; return its result once the change is committed."""
        if self.failed is not None:
            raise RuntimeError(f"the master's store failed: {self.failed}")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((fn, future))
        return await future

    def post(self, fn: Callable[[float], Any]) -> None:
        """Apply `fn(now)` in order with every other event, without waiting for the commit."""
        self._queue.put_nowait((fn, None))

    def start(self, handler: EffectHandler) -> None:
        self._handler = handler
        self._task = asyncio.get_running_loop().create_task(self._run(), name="titan-master-loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._store_thread.shutdown(wait=True)

    async def _next_batch(self) -> list[tuple[Callable[[float], Any], asyncio.Future[Any] | None]]:
        deadline = self.state.next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - self.clock())
        batch = []
        try:
            batch.append(await asyncio.wait_for(self._queue.get(), timeout))
        except asyncio.TimeoutError:
            pass
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
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
                        log.exception("event failed")
                    outcomes.append((future, None, exc))
            self.state.tick(now)
            changes = self.state.take_changes()
            effects = self.state.take_effects()
            if changes:
                try:
                    await self.in_store(self.store.save, changes)
                except Exception as exc:
                    # Memory and disk now disagree: refuse to act on anything, and stop.
                    self.failed = exc
                    log.critical("store write failed, the master stops: %s", exc)
                    for future, _, _ in outcomes:
                        if future is not None and not future.done():
                            future.set_exception(RuntimeError(f"the master's store failed: {exc}"))
                    raise
            for future, result, exc in outcomes:
                if future is None or future.done():
                    continue
                if exc is not None:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            try:
                await self._handler(effects, changes)
            except Exception:
                log.exception("carrying out effects failed")
