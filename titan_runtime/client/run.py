"""Handles on submitted runs: a `Run` is its id (a str) plus the calls to follow it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from titan_runtime.client.records import JobRecord, RunRecord

if TYPE_CHECKING:
    from titan_runtime.client.aio import AsyncTitanClient
    from titan_runtime.client.sync import TitanClient


class Run(str):
    """A run submitted with `submit_dag` or `submit_yaml`. It is the run id, so it prints and
    compares as one; its methods ask the master."""

    _client: TitanClient

    def __new__(cls, run_id: str, client: TitanClient) -> Run:
        run = super().__new__(cls, run_id)
        run._client = client
        return run

    @property
    def id(self) -> str:
        return str(self)

    def status(self) -> RunRecord:
        return self._client.get_run(self.id)

    def wait(self, timeout: float | None = None) -> RunRecord:
        """Block until the run has ended, whatever the outcome; TimeoutError after `timeout` seconds."""
        return self._client.wait_run(self.id, timeout)

    def jobs(self) -> list[JobRecord]:
        return self.status().jobs

    def results(self) -> dict[str, Any]:
        """Job id -> result, for every job that set one."""
        return {job.id: self._client.get_result(job.ref) for job in self.jobs() if job.has_result}

    def cancel(self) -> list[str]:
        return self._client.cancel(self.id, wait=True)


class AsyncRun(str):
    """`Run` for the asyncio client: the same methods, as coroutines."""

    _client: AsyncTitanClient

    def __new__(cls, run_id: str, client: AsyncTitanClient) -> AsyncRun:
        run = super().__new__(cls, run_id)
        run._client = client
        return run

    @property
    def id(self) -> str:
        return str(self)

    async def status(self) -> RunRecord:
        return await self._client.get_run(self.id)

    async def wait(self, timeout: float | None = None) -> RunRecord:
        return await self._client.wait_run(self.id, timeout)

    async def jobs(self) -> list[JobRecord]:
        return (await self.status()).jobs

    async def results(self) -> dict[str, Any]:
        return {job.id: await self._client.get_result(job.ref) for job in await self.jobs() if job.has_result}

    async def cancel(self) -> list[str]:
        return await self._client.cancel(self.id, wait=True)
