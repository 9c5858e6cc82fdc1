"""`TitanJobTrigger`: waits in the triggerer for a Titan job that a deferred `TitanOperator` submitted.

The trigger never submits anything: the operator submitted the job (idempotently, under a run id
derived from the Airflow try) before deferring, and the trigger only waits for it. A triggerer
restart re-creates the trigger from `serialize()` and waits again for the same job, so it can
never start the work twice. Waiting is one long-poll to the master at a time, which costs the
triggerer almost nothing however long the job runs.

Cancellation of the remote job belongs in `on_kill()` (Airflow 3.3+ calls it when a user kills
the deferred task), never in `cleanup()`, which also runs when the triggerer merely restarts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from titan_airflow.cancellation import KILL_TIMEOUT_S, SUPERSEDED, keeping_cancel_message
from titan_airflow.hooks import DEFAULT_CONN_ID, TitanHook
from titan_runtime import AsyncTitanClient, TitanConnectionError, TitanError
from titan_runtime.client.backoff import Backoff

#: How long an unreachable master is retried before the trigger reports an error.
RECONNECT_FOR_S = 300.0


class TitanJobTrigger(BaseTrigger):
    """Fires one event when the Titan job `ref` has ended (whatever the outcome).

    The event payload: {"status": "ended", "ref", "state", "reason", "exit_code"}, or
    {"status": "error", "ref", "message"} when the master could not be asked.
    """

    def __init__(
        self, ref: str, titan_conn_id: str | None = DEFAULT_CONN_ID, reconnect_for: float = RECONNECT_FOR_S
    ) -> None:
        super().__init__()
        self.ref = ref
        self.titan_conn_id = titan_conn_id
        self.reconnect_for = float(reconnect_for)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"ref": self.ref, "titan_conn_id": self.titan_conn_id, "reconnect_for": self.reconnect_for},
        )

    async def _client(self) -> AsyncTitanClient:
        return await TitanHook(titan_conn_id=self.titan_conn_id).get_async_conn()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            client = await self._client()
        except Exception as exc:
            yield TriggerEvent({"status": "error", "ref": self.ref, "message": str(exc)})
            return
        try:
            yield TriggerEvent(await keeping_cancel_message(asyncio.ensure_future(self._wait(client))))
        finally:
            await client.close()

    async def _wait(self, client: AsyncTitanClient) -> dict[str, Any]:
        backoff = Backoff(0.5, 10.0, patience=self.reconnect_for)
        announced = False
        while True:
            try:
                if not announced:
                    record = await client.get_job(self.ref)
                    where = f" on worker {record.worker_name}" if record.worker_name else ""
                    self.log.info("Waiting for Titan job %s (%s%s)", record.ref, record.state, where)
                    announced = True
                record = await client.wait(self.ref)
                self.log.info("Titan job %s ended: %s (%s)", record.ref, record.state, record.reason or "-")
                if record.state == "CANCELLED" and record.reason.startswith(SUPERSEDED):
                    # A later try of the task cancelled this try's job (a cleared task). Airflow may
                    # still hand this trigger's event to the task instance, now the later try's:
                    # no event, then; Airflow cancels this trigger once nothing refers to it.
                    self.log.info("A later try of this task replaced Titan job %s; no event", record.ref)
                    await asyncio.Event().wait()
                return {
                    "status": "ended",
                    "ref": record.ref,
                    "state": record.state,
                    "reason": record.reason,
                    "exit_code": record.exit_code,
                }
            except TitanConnectionError as exc:
                delay = backoff.next_delay()
                if delay is None:
                    return {"status": "error", "ref": self.ref, "message": str(exc)}
                self.log.warning("Titan master unreachable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
            except TitanError as exc:
                return {"status": "error", "ref": self.ref, "message": str(exc)}

    async def on_kill(self) -> None:
        """The user killed the deferred task: cancel the Titan job and wait until its processes are gone."""
        client = await self._client()
        try:
            cancelled = await client.cancel(self.ref, wait=True, timeout=KILL_TIMEOUT_S)
            self.log.info("Cancelled Titan job %s (%s)", self.ref, ", ".join(cancelled) or "it had ended")
        finally:
            await client.close()
