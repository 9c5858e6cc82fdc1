"""Handles on submitted runs: a `Run` is its id (a str) plus the calls to follow it."""

from __future__ import annotations

from typing import Any

from titan_runtime.client import ops
from titan_runtime.client.drivers import Awaiting, Blocking, operation
from titan_runtime.client.instructions import Op
from titan_runtime.client.records import JobRecord, RunRecord


class RunCalls(str):
    """A run submitted with `submit_dag` or `submit_yaml`. It is the run id, so it prints and
    compares as one; its methods ask the master through the client that submitted it (written
    once, as operations: see client/drivers.py)."""

    _client: Any

    def __new__(cls, run_id: str, client: Any) -> Any:
        run = super().__new__(cls, run_id)
        run._client = client
        return run

    @property
    def id(self) -> str:
        return str(self)

    def _run(self, op: Op[Any]) -> Any:
        return self._client._run(op)

    @operation
    def status(self) -> Op[RunRecord]:
        return (yield from ops.get_run(self.id, self._client._reconnect))

    @operation
    def wait(self, timeout: float | None = None) -> Op[RunRecord]:
        """Until the run has ended, whatever the outcome; TitanTimeoutError (a TimeoutError) after
        `timeout` seconds."""
        return (yield from ops.wait_run(self.id, timeout, self._client._reconnect))

    @operation
    def jobs(self) -> Op[list[JobRecord]]:
        return (yield from ops.get_run(self.id, self._client._reconnect)).jobs

    @operation
    def results(self) -> Op[dict[str, Any]]:
        """Job id -> result, for every job that set one."""
        results = {}
        for job in (yield from ops.get_run(self.id, self._client._reconnect)).jobs:
            if job.has_result:
                results[job.id] = yield from ops.get_result(job.ref, self._client._reconnect)
        return results

    @operation
    def cancel(self) -> Op[list[str]]:
        return (yield from ops.cancel(self.id, wait=True))


class Run(RunCalls, Blocking):
    """A run of the blocking client: its methods return their results."""


class AsyncRun(RunCalls, Awaiting):
    """A run of the asyncio client: the same methods, as coroutines."""
