"""An Airflow listener that stops a task's Titan work when a user sets the task's state by hand.

Marking a task failed (or success, or skipped) through the UI or the REST API kills a running
task: Airflow SIGTERMs its process (the operator's `on_kill` cancels the job) or cancels its
trigger (the trigger's `on_kill` does). When neither runs — the task was deferred and no
triggerer had its trigger (the triggerer was down, or had not picked it up yet) — the Titan job
would run on to its end. Airflow's api-server calls this listener for every such change, so it
cancels whatever Titan runs of that task instance are still running, whatever happened elsewhere.

Registered through the `titan` plugin (entry point `airflow.plugins`). It acts only on changes
made by hand (Airflow passes no previous state for those) and only for Titan's operators.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

from titan_airflow.cancellation import running_tries
from titan_airflow.hooks import DEFAULT_CONN_ID, TitanHook

log = logging.getLogger(__name__)
#: The operators whose tasks have Titan runs (`TaskInstance.operator` is the class name).
TITAN_OPERATORS = frozenset({"TitanOperator", "TitanPipelineOperator"})


def cancel_titan_work(task_instance: Any) -> list[str]:
    """Cancel every running Titan run of `task_instance` (any try; no wait: the API request that
    changed the state is waiting on us). Returns the runs cancelled."""
    if getattr(task_instance, "operator", None) not in TITAN_OPERATORS:
        return []
    task = getattr(task_instance, "task", None)
    conn_id = getattr(task, "titan_conn_id", None) or DEFAULT_CONN_ID
    map_index = task_instance.map_index if task_instance.map_index is not None else -1
    key = (task_instance.dag_id, task_instance.task_id, task_instance.run_id, 0, map_index)
    with TitanHook(titan_conn_id=conn_id).get_conn() as client:
        running = [run_id for _, run_id in running_tries(client, key)]
        for run_id in running:
            client.cancel(run_id)
    return running


def _by_hand(previous_state: Any, task_instance: Any, what: str) -> None:
    if previous_state is not None:  # the task itself ended: its operator saw to its work
        return
    try:
        for run_id in cancel_titan_work(task_instance):
            log.info(
                "Cancelled Titan run %s: task %s was set %s by hand", run_id, task_instance.task_id, what
            )
    except Exception:  # a listener must never fail the user's request
        log.exception("Could not cancel the Titan work of task %s", getattr(task_instance, "task_id", "?"))


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    _by_hand(previous_state, task_instance, "failed")


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    _by_hand(previous_state, task_instance, "successful")


@hookimpl
def on_task_instance_skipped(previous_state: Any, task_instance: Any) -> None:
    _by_hand(previous_state, task_instance, "skipped")
