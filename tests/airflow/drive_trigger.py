"""Drive TitanOperator's deferrable path and TitanJobTrigger by hand, as a triggerer would.

dag.test() runs a trigger once, inline; it cannot restart a triggerer or kill a deferred task.
This script does both against a real Titan cluster (the connection comes from
AIRFLOW_CONN_TITAN_DEFAULT) and writes what it saw as JSON for the test to check. It runs in a
subprocess so that Airflow is never imported into the pytest process.

usage: python drive_trigger.py restart|kill|stale|unreachable --out OUT.json --gate PATH --pidfile PATH
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.sdk._shared.module_loading import import_string
from airflow.sdk.exceptions import TaskDeferred

from titan_airflow import TitanHook, TitanJobTrigger, TitanOperator


@dataclass
class StandInTaskInstance:
    """The few task-instance fields TitanOperator reads, for one fixed try."""

    dag_id: str = "driven"
    task_id: str = "deferred"
    run_id: str = "manual__2026-01-01T00:00:00+00:00"
    try_number: int = 1
    map_index: int = -1

    def __post_init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        return self.xcom.get(key)


def defer(op: TitanOperator, context: dict[str, Any]) -> TitanJobTrigger:
    try:
        op.execute(context)
    except TaskDeferred as deferred:
        assert deferred.method_name == "execute_complete"
        return deferred.trigger
    raise AssertionError("execute() did not defer")


def recreate(trigger: TitanJobTrigger) -> TitanJobTrigger:
    """What the triggerer does with a stored trigger: rebuild it from serialize()."""
    classpath, kwargs = trigger.serialize()
    return import_string(classpath)(**json.loads(json.dumps(kwargs)))


async def restart(op: TitanOperator, context: dict[str, Any], gate: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    # The task runs execute() twice for one try (say its worker died after submitting).
    first, second = defer(op, context), defer(op, context)
    seen["refs"] = [first.ref, second.ref]
    trigger = recreate(first)
    waiting = asyncio.ensure_future(trigger.run().__anext__())
    done, _ = await asyncio.wait({waiting}, timeout=1.0)
    seen["fired_while_job_blocked"] = bool(done)
    # Triggerer restart: the trigger task is cancelled and cleanup() runs; the job must go on.
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
        await waiting
    await trigger.cleanup()
    with TitanHook().get_conn() as client:
        seen["state_after_restart"] = client.get_job(first.ref).state
    gate.touch()
    event = await recreate(first).run().__anext__()
    seen["event"] = event.payload
    seen["result"] = op.execute_complete(context, event=event.payload)
    return seen


async def kill(op: TitanOperator, context: dict[str, Any], pidfile: Path) -> dict[str, Any]:
    trigger = recreate(defer(op, context))
    waiting = asyncio.ensure_future(trigger.run().__anext__())
    while not (pidfile.exists() and len(pidfile.read_text().split()) == 2):
        await asyncio.sleep(0.02)
    seen: dict[str, Any] = {"ref": trigger.ref, "pids": [int(p) for p in pidfile.read_text().split()]}
    await trigger.on_kill()  # the user marked the deferred task failed
    event = await asyncio.wait_for(waiting, 60)
    seen["event"] = event.payload
    try:
        op.execute_complete(context, event=event.payload)
        seen["raised"] = None
    except Exception as exc:
        seen["raised"] = f"{type(exc).__name__}: {exc}"
    return seen


async def stale(op: TitanOperator, gate: Path) -> dict[str, Any]:
    """A cleared task: try 2 begins while try 1's trigger still waits, and cancels try 1's job.
    Try 1's trigger must not fire (Airflow may hand its event to try 2); and an earlier try's event
    handed to try 2 anyway must not end it."""
    first_context: dict[str, Any] = {"ti": StandInTaskInstance(task_id="stale", try_number=1)}
    second_context: dict[str, Any] = {"ti": StandInTaskInstance(task_id="stale", try_number=2)}
    first = recreate(defer(op, first_context))
    waiting = asyncio.ensure_future(first.run().__anext__())
    second = defer(op, second_context)  # cancels try 1's job first
    seen: dict[str, Any] = {"refs": [first.ref, second.ref]}
    with TitanHook().get_conn() as client:
        seen["first_state"] = client.get_job(first.ref).state
    done, _ = await asyncio.wait({waiting}, timeout=3.0)
    seen["first_fired"] = bool(done)
    waiting.cancel()  # what the triggerer does once nothing refers to the trigger
    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
        await waiting
    late = {"status": "ended", "ref": first.ref, "state": "CANCELLED", "reason": "", "exit_code": None}
    try:
        op.execute_complete(second_context, event=late)
        seen["after_late_event"] = "returned"
    except TaskDeferred as deferred:
        seen["after_late_event"] = f"deferred on {deferred.trigger.ref}"
    gate.touch()
    own = await asyncio.wait_for(recreate(second).run().__anext__(), 60)
    seen["result"] = op.execute_complete(second_context, event=own.payload)
    return seen


async def unreachable(op: TitanOperator, context: dict[str, Any]) -> dict[str, Any]:
    """The master is gone (the connection points at a closed port): the trigger gives up and says so."""
    trigger = TitanJobTrigger(ref="some-run/some-job", titan_conn_id="titan_nowhere", reconnect_for=1.0)
    event = await asyncio.wait_for(trigger.run().__anext__(), 60)
    seen: dict[str, Any] = {"event": event.payload}
    try:
        op.execute_complete(context, event=event.payload)
    except Exception as exc:
        seen["raised"] = f"{type(exc).__name__}: {exc}"
    return seen


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["restart", "kill", "stale", "unreachable"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--gate", default="")
    parser.add_argument("--pidfile", default="")
    opts = parser.parse_args()
    context: dict[str, Any] = {"ti": StandInTaskInstance(task_id=opts.scenario)}
    if opts.scenario in ("restart", "stale"):
        op = TitanOperator(
            task_id=opts.scenario,
            command=[
                "{python}",
                "-c",
                "import os, sys, time\n"
                "print('started', flush=True)\n"
                "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
                "from titan_runtime import task; task.set_result('done'); print('finished')",
            ],
            args=[opts.gate],
            deferrable=True,
        )
        run = (
            restart(op, context, Path(opts.gate))
            if opts.scenario == "restart"
            else stale(op, Path(opts.gate))
        )
        seen = asyncio.run(run)
    elif opts.scenario == "kill":
        op = TitanOperator(
            task_id=opts.scenario,
            command=["bash", "-c", f'sleep 300 & echo $$ $! > "{opts.pidfile}"; wait'],
            deferrable=True,
        )
        seen = asyncio.run(kill(op, context, Path(opts.pidfile)))
    else:
        op = TitanOperator(
            task_id=opts.scenario, command=["true"], deferrable=True, titan_conn_id="titan_nowhere"
        )
        seen = asyncio.run(unreachable(op, context))
    Path(opts.out).write_text(json.dumps(seen, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
