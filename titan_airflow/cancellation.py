"""What makes a killed, failed or cleared task's Titan work stop, whichever way Airflow goes.

Nothing here imports Airflow: the triggers and operators call it, and the tests run it alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from titan_airflow.naming import TryKey
from titan_runtime import TitanClient

#: How long cancelling waits for the remote processes to be gone.
KILL_TIMEOUT_S = 30.0


async def keeping_cancel_message(waiting: asyncio.Future[Any]) -> Any:
    """Await `waiting` (a task of our own) so that a cancellation of the caller reaches Airflow
    with its message. Airflow calls a trigger's `on_kill` only when the CancelledError it gets says
    that a user acted (marked the task failed, cleared it); a gRPC call awaited directly re-raises
    a bare CancelledError, and the Titan job would then run on. Shielded, the cancellation is
    raised here as Airflow sent it; the wait is cancelled after it."""
    try:
        return await asyncio.shield(waiting)
    except asyncio.CancelledError:
        waiting.cancel()
        await asyncio.wait({waiting})
        raise


def cancel_earlier_tries(client: TitanClient, key: TryKey) -> list[str]:
    """Cancel the Titan runs of this task instance's earlier tries that have not ended, and wait
    until their processes are gone: a cleared or retried task never runs beside its previous
    try's work, even when nothing called that try's `on_kill` (its trigger had not started, its
    worker died). Returns the runs cancelled."""
    dag_id, task_id, run_id, try_number, map_index = key
    labels = {"airflow.dag_id": dag_id, "airflow.task_id": task_id, "airflow.run_id": run_id}
    cancelled = []
    for run in client.list_runs(states=["RUNNING"], labels=labels):
        if run.labels.get("airflow.map_index", "-1") != str(map_index):
            continue
        try:
            earlier = int(run.labels.get("airflow.try_number", "")) < try_number
        except ValueError:
            continue
        if earlier:
            client.cancel(run.id, wait=True, timeout=KILL_TIMEOUT_S)
            cancelled.append(run.id)
    return cancelled
