"""What makes a killed, failed or cleared task's Titan work stop, whichever way Airflow goes.

Nothing here imports Airflow: the triggers and operators call it, and the tests run it alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from titan_airflow import naming
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


def running_tries(client: TitanClient, key: TryKey) -> list[tuple[int, str]]:
    """(try number, Titan run id) of every try of this task instance whose run has not ended."""
    dag_id, task_id, run_id, _, map_index = key
    found = []
    for run in client.list_runs(states=["RUNNING"], labels=naming.instance_labels(dag_id, task_id, run_id)):
        number = naming.try_of(run.labels, map_index)
        if number is not None:
            found.append((number, run.id))
    return found


def cancel_earlier_tries(client: TitanClient, key: TryKey) -> list[str]:
    """Cancel the Titan runs of this task instance's earlier tries that have not ended, and wait
    until their processes are gone: a cleared or retried task never runs beside its previous
    try's work, even when nothing called that try's `on_kill` (its trigger had not started, its
    worker died). Returns the runs cancelled."""
    cancelled = []
    for number, run_id in running_tries(client, key):
        if number < key[3]:
            client.cancel(run_id, wait=True, timeout=KILL_TIMEOUT_S, reason=superseded_reason(key[3]))
            cancelled.append(run_id)
    return cancelled


#: How the reason of a job cancelled by a later try of its task begins (its trigger reads it).
SUPERSEDED = "cancelled by a later try of the task"


def superseded_reason(try_number: int) -> str:
    return f"{SUPERSEDED} (try {try_number}: the task was cleared or retried)"
