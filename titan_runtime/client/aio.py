"""`AsyncTitanClient`: the SDK for code that runs inside an asyncio event loop (Airflow triggers, services)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from titan_runtime.client import ops
from titan_runtime.client.calls import Calls
from titan_runtime.client.drivers import AsyncDriver
from titan_runtime.client.errors import TitanConnectionError
from titan_runtime.client.records import LogLine, WatchEvent
from titan_runtime.client.run import AsyncRun

if TYPE_CHECKING:
    from titan_runtime.client.futures import TitanFuture
    from titan_runtime.client.sync import TitanClient

T = TypeVar("T")


class AsyncTitanClient(Calls[AsyncRun], AsyncDriver):
    """The same calls as `TitanClient` (they are written once, in client/calls.py), as coroutines,
    riding out a master restart the same way (`reconnect_timeout`). Create it inside the event
    loop that uses it."""

    _blocking: TitanClient | None = None

    def _handle(self, run_id: str) -> AsyncRun:
        return AsyncRun(run_id, self)

    async def close(self) -> None:
        if self._blocking is not None:
            self._blocking.close()
        for opened in self._channels():
            await opened.close()

    def _twin(self) -> TitanClient:
        """A blocking client to the same master, with the same credentials: function tasks'
        futures are settled by a thread of their own, whichever client submitted them."""
        if self._blocking is None:
            from titan_runtime.client.sync import TitanClient

            twin = TitanClient.__new__(TitanClient)
            twin.__dict__.update(self.__dict__, _channel=None, _retired=[], _methods={}, _blocking=None)
            self._blocking = twin
        return self._blocking

    async def submit_fn(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> TitanFuture[T]:
        """`TitanClient.submit_fn`: `await client.submit_fn(f, x)` submits it, and the future it
        returns is awaited for the value (`await (await client.submit_fn(f, x))`)."""
        return await asyncio.to_thread(self._twin().submit_fn, fn, *args, **kwargs)

    async def function_result(self, ref: str) -> Any:
        """`TitanClient.function_result`."""
        return await asyncio.to_thread(self._twin().function_result, ref)

    async def map(
        self, fn: Callable[..., T], /, *iterables: Iterable[Any], **options: Any
    ) -> list[TitanFuture[T]]:
        """`TitanClient.map`; each future is awaitable (`await asyncio.gather(*futures)`)."""
        return await asyncio.to_thread(self._twin().map, fn, *iterables, **options)

    async def __aenter__(self) -> AsyncTitanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def follow_logs(
        self, job_id: str, offset: int = 0, attempt: int | None = None, follow: bool = True
    ) -> AsyncIterator[LogLine]:
        """`TitanClient.follow_logs` as an async iterator."""
        position = ops.LogFollow(job_id, offset, attempt, self._reconnect, follow)
        while True:
            try:
                async for chunk in self._stream("ReadLogs", position.request()):
                    for line in position.lines(chunk):
                        yield line
                break
            except TitanConnectionError as exc:
                error = exc
            await asyncio.sleep(position.retry_in(error))
        for line in position.end():
            yield line

    async def watch(
        self,
        kinds: Sequence[str] = (),
        run_id: str = "",
        recent_runs: int = 20,
        *,
        interval: float | None = None,
        results: bool = False,
    ) -> AsyncIterator[WatchEvent]:
        """`TitanClient.watch` as an async iterator."""
        watching = ops.Watching(kinds, run_id, recent_runs, self._reconnect, interval, results)
        while True:
            try:
                async for message in self._stream("Watch", watching.request()):
                    yield watching.event(message)
                return
            except TitanConnectionError as exc:
                await asyncio.sleep(watching.retry_in(exc))
