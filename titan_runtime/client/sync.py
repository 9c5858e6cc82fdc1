"""`TitanClient`: the blocking Python SDK."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from titan_runtime.client import ops
from titan_runtime.client.calls import Calls
from titan_runtime.client.drivers import BlockingDriver
from titan_runtime.client.errors import TitanConnectionError
from titan_runtime.client.futures import FunctionSession, TaskFailed, TitanFuture
from titan_runtime.client.records import LogLine, WatchEvent
from titan_runtime.client.run import Run

T = TypeVar("T")


class TitanClient(Calls[Run], BlockingDriver):
    """Talks to a Titan master. Address and token follow the usual resolution order
    (argument, TITAN_ADDRESS / TITAN_HOST+TITAN_PORT, TITAN_TOKEN, the data dir's token file).

    Every method raises on failure (`TitanConnectionError`, `JobNotFound`, `InvalidJob`,
    `Unauthenticated`, ...); none returns an error status string.

    TLS: with the cluster's CA (`tls_ca`, else TITAN_TLS_CA), and a client certificate
    (`tls_cert`, `tls_key`; TITAN_TLS_CERT, TITAN_TLS_KEY) for a master that requires one.

    Once it has reached the master, the client rides out a restart: reads and waits (`wait`,
    `wait_run`, `follow_logs`, `get_job`, ...) try again for up to `reconnect_timeout` seconds
    (else TITAN_RECONNECT_TIMEOUT, else 60; 0 turns it off). Calls that must not happen twice
    (a submission without a run id, KV writes, cancel) fail at once as before.

    The methods are those of `Calls` (client/calls.py), shared with `AsyncTitanClient`.
    """

    _functions: FunctionSession | None = None

    def _handle(self, run_id: str) -> Run:
        return Run(run_id, self)

    def close(self) -> None:
        if self._functions is not None:
            self._functions.close()
        for opened in self._channels():
            opened.close()

    # ------------------------------------------------------------------ Python function tasks

    @property
    def functions(self) -> FunctionSession:
        """This client's function tasks: their session run (`.run_id`) and pending futures."""
        if self._functions is None:
            self._functions = FunctionSession(self)
        return self._functions

    def submit_fn(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        requirement: str | Sequence[str] | None = None,
        slots: int = 1,
        timeout: float = 0.0,
        retries: int = 0,
        priority: int = 1,
        labels: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> TitanFuture[T]:
        """Run `fn(*args, **kwargs)` on a worker, in a warm Python process; a future of what it
        returns (or raises). `fn` and the arguments travel pickled (cloudpickle: lambdas and
        closures too); a TitanFuture among the arguments is another task's value, passed on the
        cluster. `requirement`: the worker tags it needs; `retries`: attempts after a failure.
        The keyword names above are the task's options, not `fn`'s (docs/python-tasks.md)."""
        options = {"requirement": requirement, "slots": slots, "timeout": timeout, "retries": retries,
                   "priority": priority, "labels": labels}  # fmt: skip
        return self.functions.submit(fn, [(args, kwargs)], options)[0]

    def function_result(self, ref: str) -> Any:
        """The value a function task returned (RUN/JOB), raised again if it raised: what its
        future gives, for a caller that no longer holds the future."""
        record = self.get_job(ref)
        if not record.terminal:
            raise TaskFailed(f"function task {ref} has not ended ({record.state})")
        return self.functions.outcome(record)

    def map(
        self,
        fn: Callable[..., T],
        /,
        *iterables: Iterable[Any],
        requirement: str | Sequence[str] | None = None,
        slots: int = 1,
        timeout: float = 0.0,
        retries: int = 0,
        priority: int = 1,
        labels: dict[str, str] | None = None,
        chunksize: int = 1,
    ) -> list[TitanFuture[T]]:
        """`fn` over the items (zipped, as the built-in map), one task each, submitted in batches;
        their futures in order (`[f.result() for f in ...]`, or concurrent.futures.as_completed).
        `chunksize=N`: a task per N items (as ProcessPoolExecutor.map's), still a future per item:
        far fewer jobs for many small calls; the items take values, not futures."""
        options = {"requirement": requirement, "slots": slots, "timeout": timeout, "retries": retries,
                   "priority": priority, "labels": labels}  # fmt: skip
        calls = [(tuple(items), {}) for items in zip(*iterables, strict=False)]
        return self.functions.submit(fn, calls, options, chunksize)

    def __enter__(self) -> TitanClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def watch(
        self,
        kinds: Sequence[str] = (),
        run_id: str = "",
        recent_runs: int = 20,
        *,
        interval: float | None = None,
        results: bool = False,
    ) -> Iterator[WatchEvent]:
        """Yield what changes in the cluster as the master commits it: first a snapshot (workers,
        the unfinished runs and the `recent_runs` latest finished ones, or with `run_id` that run and
        its jobs), then events of what changed, a few a second at most. `kinds` picks among "runs",
        "jobs" and "workers" (default: all). One stream serves any number of viewers: this is what
        the dashboard holds, instead of polling. A master restart opens it again (a new snapshot).
        `interval`: the least seconds between events (default 0.25); `results`: ended function
        tasks' results come in their records (`result_json`), as many as fit."""
        watching = ops.Watching(kinds, run_id, recent_runs, self._reconnect, interval, results)
        while True:
            try:
                for message in self._stream("Watch", watching.request()):
                    yield watching.event(message)
                return
            except TitanConnectionError as exc:
                time.sleep(watching.retry_in(exc))

    def follow_logs(
        self, job_id: str, offset: int = 0, attempt: int | None = None, follow: bool = True
    ) -> Iterator[LogLine]:
        """Yield the job's output lines as they are printed, from byte `offset`, until the job ends.

        Without `attempt`, follows the latest attempt and then any retry after it. A master restart
        does not end it: it resumes after the last line it yielded (see `reconnect_timeout`). With
        follow=False, the lines logged so far, as they arrive: any size of log in little memory
        (`read_logs` holds them all).
        """
        position = ops.LogFollow(job_id, offset, attempt, self._reconnect, follow)
        while True:
            try:
                for chunk in self._stream("ReadLogs", position.request()):
                    yield from position.lines(chunk)
                break
            except TitanConnectionError as exc:
                error = exc
            time.sleep(position.retry_in(error))
        yield from position.end()
