"""Python function tasks from the caller's side: `submit_fn`, `map`, `TitanFuture`, `@remote`.

A client's function tasks go into one run, its session run (named after the program, labelled
`titan.functions`), which the master holds open for OPEN_FOR seconds after each submission so that
the next task joins it: a future passed as an argument is then a parent in the same run, and its
value goes from worker to worker through the master, never through the caller. A future of a run
that has ended since is passed by value (the caller fetches it).

The futures are settled by one thread per session, which follows the run's jobs with one watch
(`TitanClient.watch`), and reads each finished task's result once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc

from titan_runtime.client import functions
from titan_runtime.client.errors import InvalidJob, TitanError
from titan_runtime.client.records import TERMINAL_JOB_STATES, JobRecord, WatchEvent
from titan_runtime.proto import titan_pb2 as pb

if TYPE_CHECKING:
    from titan_runtime.client.sync import TitanClient

T = TypeVar("T")

#: Seconds the session run stays open after a submission, for the next one to join it.
OPEN_FOR = 300.0
LABEL = "titan.functions"
#: Tasks submitted per call to the master by `map`.
BATCH = 1000
#: Seconds a session run's watch stays open with no future pending (the next task's is ready).
IDLE_WATCH = 10.0


class TaskFailed(TitanError):
    """A function task that did not return: cancelled, its parent failed, or it failed without an
    exception to raise (e.g. killed, or timed out)."""


class TitanFuture(concurrent.futures.Future, Generic[T]):  # type: ignore[type-arg]
    """The result of a function task: `result()`, `exception()`, `done()` and callbacks as any
    concurrent.futures.Future (so `concurrent.futures.wait` and `as_completed` take it), and
    `await future` in asyncio. Passed to another task, it is that task's parent: the value goes
    there on the cluster."""

    def __init__(self, session: FunctionSession, run_id: str, job_id: str, index: int | None = None) -> None:
        super().__init__()
        self._session = session
        self.run_id = run_id
        self.job_id = job_id
        self.index = index  # its item in a chunk of `map(..., chunksize=N)`; None: the job's value

    @property
    def ref(self) -> str:
        """RUN/JOB, which `titan-runtime status`, `logs` and every job call take."""
        return f"{self.run_id}/{self.job_id}"

    def cancel(self) -> bool:
        """Cancel the task on the cluster (a running one is stopped, and tasks that take its value
        are cancelled too); True if it had not ended."""
        if self.done():
            return False
        with self._session._lock:  # the watch must not settle it (as CANCELLED) in between
            if self.done():
                return False
            try:
                self._session.client.cancel(self.ref, reason="cancelled by its future")
            except TitanError:
                return False
            return super().cancel()

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self).__await__()

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<TitanFuture {self.ref} {state}>"


class FunctionSession:
    """One client's function tasks: its session run, and the thread that settles their futures."""

    def __init__(self, client: TitanClient, open_for: float = OPEN_FOR) -> None:
        self.client = client
        self.open_for = open_for
        self.run_id = ""
        self._lock = threading.Lock()
        self._pending: dict[
            str, list[TitanFuture[Any]]
        ] = {}  # job id -> its futures (a chunk's: one per item)
        self._pending_by_run: dict[str, int] = {}  # jobs with pending futures, by run
        self._ids = itertools.count(1)
        self._watches: dict[str, _RunWatch] = {}
        self.closed = False

    # ------------------------------------------------------------------ submitting

    def submit(
        self,
        fn: Callable[..., Any],
        calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]],
        options: dict[str, Any],
        chunksize: int = 1,
    ) -> list[TitanFuture[Any]]:
        """Submit one task per (args, kwargs) of `calls` (per `chunksize` of them: a task that
        calls `fn` on each, and a future per call), in batches; their futures in order."""
        if chunksize < 1:
            raise InvalidJob(f"chunksize must be at least 1, not {chunksize}")
        name = _task_name(fn)
        jobs: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], int | None]]
        if chunksize == 1:
            jobs = [(fn, args, kwargs, None) for args, kwargs in calls]
        else:
            if any(isinstance(a, TitanFuture) for args, kwargs in calls for a in (*args, *kwargs.values())):
                raise InvalidJob(
                    "map(..., chunksize=N) takes values, not futures: give futures with chunksize=1"
                )
            chunks = [list(calls[i : i + chunksize]) for i in range(0, len(calls), chunksize)]
            jobs = [(functions.run_chunk, (fn, chunk), {}, len(chunk)) for chunk in chunks]
        futures: list[TitanFuture[Any]] = []
        for start in range(0, len(jobs), BATCH):
            futures.extend(self._submit_batch(name, jobs[start : start + BATCH], options))
        return futures

    def _submit_batch(
        self,
        name: str,
        jobs: Sequence[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], int | None]],
        options: dict[str, Any],
    ) -> list[TitanFuture[Any]]:
        """Submit jobs, each (fn, args, kwargs, items): items None for one future of its value,
        N for a chunk's N futures."""
        given = [
            a for _, args, kwargs, _ in jobs for a in (*args, *kwargs.values()) if isinstance(a, TitanFuture)
        ]
        ended_once = False
        while True:
            # A future that cannot be passed as a reference is passed by value: waited for here,
            # not under the lock, which the thread settling this session's futures needs.
            for future in given:
                if not self._passable(future):
                    future.result()
            with self._lock:
                if not all(self._passable(f) or f.done() for f in given):
                    continue  # the session run changed meanwhile: wait for those values first
                specs, ids = [], []
                for fn, args, kwargs, _ in jobs:
                    job_id = f"{name}-{next(self._ids)}"
                    specs.append(self._spec(job_id, fn, args, kwargs, options))
                    ids.append(job_id)
                try:
                    run_id = self.client._submit_functions(
                        specs, self.run_id, _session_name(), {LABEL: "1"}, self.open_for
                    )
                except TitanError:
                    if ended_once or not self.run_id or not self._session_ended():
                        raise
                    self.run_id, ended_once = "", True  # it ended: a new session run, once
                    continue
                self.run_id = run_id
                futures: list[TitanFuture[Any]] = []
                for job_id, (_, _, _, items) in zip(ids, jobs, strict=True):
                    mine = (
                        [TitanFuture(self, run_id, job_id)]
                        if items is None
                        else [TitanFuture(self, run_id, job_id, i) for i in range(items)]
                    )
                    self._pending[job_id] = mine
                    futures.extend(mine)
                self._pending_by_run[run_id] = self._pending_by_run.get(run_id, 0) + len(ids)
                self._ensure_watching()
                return futures

    def _passable(self, future: TitanFuture[Any]) -> bool:
        """Whether a future is passed as a reference: a task of this session's current run."""
        return future._session is self and future.run_id == self.run_id and bool(self.run_id)

    def _spec(
        self,
        job_id: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> pb.JobSpec:
        args = tuple(self._argument(a) for a in args)
        kwargs = {k: self._argument(v) for k, v in kwargs.items()}
        spec = pb.JobSpec(
            id=job_id,
            kind="function",
            call=functions.encode_call(fn, args, kwargs),
            parents=sorted(set(functions.refs_in(args, kwargs))),
            tags=_tags(options.get("requirement")),
            slots=int(options.get("slots") or 1),
            timeout=float(options.get("timeout") or 0.0),
            priority=int(options.get("priority") or 1),
            labels=dict(options.get("labels") or {}),
        )
        if options.get("retries"):
            spec.retries.attempts = int(options["retries"]) + 1
        return spec

    def _argument(self, value: Any) -> Any:
        """A future of the session run becomes a reference to its job; any other (settled by
        now, see _submit_batch), its value."""
        if isinstance(value, TitanFuture):
            return functions.Ref(value.job_id) if self._passable(value) else value.result()
        return value

    def _session_ended(self) -> bool:
        try:
            return self.client.get_run(self.run_id, jobs=[]).terminal
        except TitanError:
            return True

    # ------------------------------------------------------------------ settling

    def _ensure_watching(self) -> None:
        """Called with the lock held, after futures of the session run were added."""
        watch = self._watches.get(self.run_id)
        if watch is None:
            watch = self._watches[self.run_id] = _RunWatch(self, self.run_id)
            watch.thread.start()
        watch.busy()

    def pending_in(self, run_id: str) -> bool:
        return self._pending_by_run.get(run_id, 0) > 0

    def settle(self, job: JobRecord) -> None:
        """Settle the futures of this ended job, if they are ours and pending."""
        with self._lock:
            futures = self._pending.get(job.id)
            if not futures or futures[0].run_id != job.run_id:
                return
            self._forget(job.run_id, job.id)
        try:
            value = self.outcome(job)
        except BaseException as exc:
            for future in futures:
                _set(future, exception=exc)
            return
        for future in futures:
            if future.index is None:
                _set(future, value=value)
            else:  # a chunk's item: (True, value) or (False, its error envelope)
                ok, got = value[future.index]
                _set(future, value=got) if ok else _set(
                    future, exception=functions.exception_of(json.loads(got))
                )

    def outcome(self, job: JobRecord) -> Any:
        """An ended function task's value; raises its exception (or TaskFailed if it has none)."""
        result = None
        if job.result_json:
            result = json.loads(job.result_json)
        elif job.state in ("SUCCEEDED", "FAILED") and job.has_result:
            result = self.client.get_result(job.ref)
        if functions.is_envelope(result):
            if functions.ERROR in result:
                raise functions.exception_of(result)
            return self._value(job.run_id, result)
        what = job.state.lower().replace("_", " ")
        raise TaskFailed(f"function task {job.ref} {what}: {job.reason}".rstrip(": "))

    def fail_pending(self, run_id: str, why: str) -> None:
        with self._lock:
            jobs = [(job_id, fs) for job_id, fs in self._pending.items() if fs[0].run_id == run_id]
            for job_id, _ in jobs:
                self._forget(run_id, job_id)
        for _, futures in jobs:
            for future in futures:
                _set(future, exception=TitanError(f"lost track of {future.ref}: {why}"))

    def _value(self, run_id: str, result: dict[str, Any]) -> Any:
        if functions.ARTIFACT not in result:
            return functions.load_value(result)
        with tempfile.TemporaryDirectory(prefix="titan-result-") as tmp:
            path = self.client.get_artifact(result[functions.ARTIFACT], Path(tmp) / "value", run_id=run_id)
            return functions._pickle().loads(path.read_bytes())

    def _forget(self, run_id: str, job_id: str) -> None:
        """Called with the lock held: the job's futures are being settled."""
        if self._pending.pop(job_id, None) is not None:
            self._pending_by_run[run_id] -= 1
            if not self._pending_by_run[run_id]:
                del self._pending_by_run[run_id]

    def close(self) -> None:
        self.closed = True
        with self._lock:
            watches = list(self._watches.values())
        for watch in watches:
            watch.stop()


class _RunWatch:
    """One session run's watch stream (results included, no pacing), read by a thread of its own
    while futures of the run are pending, and IDLE_WATCH seconds after: a caller that submits and
    waits, task after task, keeps one stream instead of opening one (and reading the run's jobs
    again) per task."""

    def __init__(self, session: FunctionSession, run_id: str) -> None:
        self.session = session
        self.run_id = run_id
        self.thread = threading.Thread(target=self._run, name=f"titan-futures {run_id}", daemon=True)
        self._call: Any = None
        self._idle: threading.Timer | None = None

    def busy(self) -> None:
        """Futures were added: do not let the stream go idle."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def stop(self) -> None:
        self.busy()
        call = self._call
        if call is not None:
            call.cancel()

    def _idle_soon(self) -> None:
        if self._idle is None:
            self._idle = threading.Timer(IDLE_WATCH, self.stop)
            self._idle.daemon = True
            self._idle.start()

    def _run(self) -> None:
        session, client = self.session, self.session.client
        request = pb.WatchRequest(kinds=["jobs"], run_id=self.run_id, interval=0.0, results=True)
        failures = 0
        while True:
            with session._lock:
                if session.closed or not session.pending_in(self.run_id):
                    session._watches.pop(self.run_id, None)
                    self.busy()
                    return
                rpc, on = client._rpc("Watch")
                self._call = call = rpc(request, metadata=client._metadata)
            try:
                for message in call:
                    failures = 0
                    event = WatchEvent.from_pb(message)
                    jobs = client.get_run(self.run_id).jobs if event.resync else event.jobs
                    for job in jobs:
                        if job.state in TERMINAL_JOB_STATES:
                            session.settle(job)
                    with session._lock:
                        if not session.pending_in(self.run_id):
                            self._idle_soon()
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.CANCELLED:
                    continue  # idle, or closed: the loop's check says which
                failures += 1
                error = client._failed(exc, on)[0]  # a standby's answer: the leader is dialled next
                if failures > 30:  # a minute without the master: give up on these futures
                    session.fail_pending(self.run_id, str(error))
                time.sleep(min(2.0, 0.1 * failures))
            except Exception as exc:
                session.fail_pending(self.run_id, str(exc))


def _task_name(fn: Callable[..., Any]) -> str:
    """The task's job id stem: the function's name, as a job id allows."""
    name = getattr(fn, "__name__", "") or type(fn).__name__
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", name).strip("._-") or "fn"
    return name[:80]


def _session_name() -> str:
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return f"functions of {program} (pid {os.getpid()})"


def _tags(requirement: str | Iterable[str] | None) -> list[str]:
    if not requirement:
        return []
    if isinstance(requirement, str):
        return [t.strip() for t in requirement.split(",") if t.strip()]
    return list(requirement)


def _set(future: TitanFuture[Any], value: Any = None, exception: BaseException | None = None) -> None:
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(value)
    except concurrent.futures.InvalidStateError:  # cancelled by its caller meanwhile
        pass


class Remote(Generic[T]):
    """A function made remote with `@titan_runtime.remote(...)`: called as before, run on the
    cluster with `.submit(*args, **kwargs)` (a TitanFuture) or `.map(iterable)`."""

    def __init__(self, fn: Callable[..., T], options: dict[str, Any], client: TitanClient | None) -> None:
        self.fn = fn
        self.options_given = options
        self._client = client
        self.__name__ = getattr(fn, "__name__", "remote")
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> T:
        return self.fn(*args, **kwargs)

    @property
    def client(self) -> TitanClient:
        if self._client is None:
            from titan_runtime.client.sync import TitanClient

            self._client = _default_client(TitanClient)
        return self._client

    def submit(self, *args: Any, **kwargs: Any) -> TitanFuture[T]:
        options = {k: v for k, v in self.options_given.items() if k != "chunksize"}  # map's alone
        return self.client.submit_fn(self.fn, *args, **options, **kwargs)

    def map(self, *iterables: Iterable[Any]) -> list[TitanFuture[T]]:
        return self.client.map(self.fn, *iterables, **self.options_given)

    def options(self, **options: Any) -> Remote[T]:
        """The same function with other task options (`slots=2`, `requirement="gpu"`, ...)."""
        return Remote(self.fn, {**self.options_given, **options}, self._client)


_shared: Any = None
_shared_lock = threading.Lock()


def _default_client(make: Callable[[], Any]) -> Any:
    """One client for every `@remote` function without its own, made on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = make()
        return _shared


def remote(
    fn: Callable[..., T] | None = None,
    *,
    client: TitanClient | None = None,
    **options: Any,
) -> Any:
    """`@remote` or `@remote(requirement="gpu", slots=1, timeout=60, retries=2, client=...)`: the
    function gains `.submit()` and `.map()`, which run it on the cluster. Without `client`, one
    TitanClient made from the environment (TITAN_ADDRESS, TITAN_TOKEN) serves them all."""
    if fn is not None:
        return Remote(fn, options, client)
    return lambda f: Remote(f, options, client)
