"""Saved DAGs and cron schedules: kept in the store, fired by a timer on the master loop.

A saved DAG is a submission kept under a name (its scripts already uploaded as artifacts). A
schedule fires a saved DAG on a cron expression (croniter, UTC). The decisions (on time, missed,
catch up) are in `core.schedule`; this module keeps the records and the timer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from google.protobuf import json_format

from titan_runtime.core import schedule as policy
from titan_runtime.cron import CronError, check_cron, next_after
from titan_runtime.master.loop import MasterLoop, cancel_and_wait
from titan_runtime.proto import titan_pb2 as pb

log = logging.getLogger("titan.master")

DAG_PREFIX = "titan/dag/"
SCHEDULE_PREFIX = "titan/schedule/"


class ScheduleError(ValueError):
    pass


Submit = Callable[[pb.SubmitRunRequest], Awaitable[pb.SubmitRunResponse]]


class Schedules:
    """Saved DAGs and schedules in the store's KV namespace `titan/`, and the timer that fires them."""

    def __init__(self, loop: MasterLoop, submit: Submit) -> None:
        self._loop = loop
        self._submit = submit
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ saved DAGs

    async def save_dag(self, dag: pb.SavedDag) -> pb.SavedDag:
        dag.saved_at = self._loop.clock()
        await self._put(DAG_PREFIX + dag.name, json_format.MessageToJson(dag))
        return dag

    async def get_dag(self, name: str) -> pb.SavedDag | None:
        text = await self._loop.in_store(self._loop.store.kv_get, DAG_PREFIX + name)
        return None if text is None else json_format.Parse(text, pb.SavedDag())

    async def list_dags(self) -> list[pb.SavedDag]:
        names = await self._loop.in_store(self._loop.store.kv_smembers, DAG_PREFIX)
        found = [await self.get_dag(name) for name in names]
        return [d for d in found if d is not None]

    async def delete_dag(self, name: str) -> bool:
        store = self._loop.store
        await self._loop.in_store(store.kv_srem, DAG_PREFIX, name)
        return bool(await self._loop.in_store(store.kv_delete, DAG_PREFIX + name))

    # ------------------------------------------------------------------ schedules

    async def add_schedule(self, item: pb.Schedule) -> pb.Schedule:
        try:
            check_cron(item.cron, item.seconds)
        except CronError as exc:
            raise ScheduleError(str(exc)) from None
        if await self.get_dag(item.dag) is None:
            raise ScheduleError(
                f"no saved DAG {item.dag!r}: save it first (titan-runtime schedule add saves the YAML)"
            )
        now = self._loop.clock()
        item.created_at = now
        item.next_fire = next_after(item.cron, now)
        await self._put(SCHEDULE_PREFIX + item.name, json_format.MessageToJson(item))
        self._changed.set()
        return item

    async def get_schedule(self, name: str) -> pb.Schedule | None:
        text = await self._loop.in_store(self._loop.store.kv_get, SCHEDULE_PREFIX + name)
        return None if text is None else json_format.Parse(text, pb.Schedule())

    async def list_schedules(self) -> list[pb.Schedule]:
        names = await self._loop.in_store(self._loop.store.kv_smembers, SCHEDULE_PREFIX)
        found = [await self.get_schedule(name) for name in names]
        return [s for s in found if s is not None]

    async def delete_schedule(self, name: str) -> bool:
        store = self._loop.store
        await self._loop.in_store(store.kv_srem, SCHEDULE_PREFIX, name)
        removed = bool(await self._loop.in_store(store.kv_delete, SCHEDULE_PREFIX + name))
        self._changed.set()
        return removed

    async def _put(self, key: str, value: str) -> None:
        store = self._loop.store
        prefix, _, name = key.rpartition("/")
        await self._loop.in_store(store.kv_put, key, value)
        await self._loop.in_store(store.kv_sadd, prefix + "/", name)

    # ------------------------------------------------------------------ the timer

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="titan-schedules")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            wait = 3600.0
            for item in await self.list_schedules():
                try:
                    wait = min(wait, await self._fire_if_due(item))
                except Exception:
                    log.exception("schedule %s failed to fire", item.name)
            try:
                await asyncio.wait_for(self._changed.wait(), max(wait, 0.05))
            except asyncio.TimeoutError:
                pass

    async def _fire_if_due(self, item: pb.Schedule) -> float:
        """Fire `item` if its time has come; return the seconds until it should be looked at again."""
        now = self._loop.clock()
        fire, following = policy.due(item.cron, item.next_fire, now, item.catch_up, next_after)
        if fire is None and following == item.next_fire:
            return item.next_fire - now
        if fire is not None:
            dag = await self.get_dag(item.dag)
            if dag is None:
                log.warning("schedule %s: its DAG %s was deleted; not firing", item.name, item.dag)
            else:
                request = pb.SubmitRunRequest()
                request.CopyFrom(dag.run)
                request.run_id = policy.run_id_for(item.name, fire)
                request.labels["schedule"] = item.name
                request.labels["scheduled_for"] = datetime.fromtimestamp(fire, tz=timezone.utc).isoformat()
                response = await self._submit(request)
                item.last_fire, item.last_run_id = fire, response.run_id
                log.info(
                    "schedule %s fired run %s for %s",
                    item.name,
                    response.run_id,
                    request.labels["scheduled_for"],
                )
        elif item.next_fire:
            log.info(
                "schedule %s: missed %s while the master was down; skipped (no catch_up)",
                item.name,
                json.dumps(item.next_fire),
            )
        item.next_fire = following
        await self._put(SCHEDULE_PREFIX + item.name, json_format.MessageToJson(item))
        return max(0.0, following - self._loop.clock())
