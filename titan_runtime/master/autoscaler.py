"""The autoscaler loop: on a timer, ask `core.autoscaler` what to do and do it through the providers.

Decisions live in the core (`Autoscaler.step`, with the time passed in); this module only moves
them: it reads the cluster state on the master's event loop thread, starts launches through each
pool's provider (in the background: an SSH bootstrap takes seconds), drains descaled workers
through the master loop (committed like any drain), retires launches, and keeps the decision log
(persisted in the store's KV namespace so `autoscaler events` survives a restart).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets

from titan_runtime.clusterconfig import ClusterFile
from titan_runtime.core.autoscaler import (
    Action,
    Autoscaler,
    Drain,
    Launch,
    Retire,
    ScaleEvent,
    pending_demand,
)
from titan_runtime.core.cluster import NotFound
from titan_runtime.master.jointokens import JoinTokens
from titan_runtime.master.loop import MasterLoop, cancel_and_wait
from titan_runtime.providers.base import LaunchRequest, Provider, ProviderError
from titan_runtime.tls import ClientTls

log = logging.getLogger("titan.autoscaler")

EVENTS_KEY = "titan/autoscaler/events"


class AutoscalerLoop:
    def __init__(
        self,
        loop: MasterLoop,
        cluster: ClusterFile,
        providers: dict[str, Provider],
        master_address: str,
        cluster_token: str,
        join_tokens: JoinTokens,
        local_tls: ClientTls | None = None,
    ) -> None:
        self.loop = loop
        self.local_tls = local_tls
        self.cluster = cluster
        self.pools = {p.name: p for p in cluster.pools}
        self.providers = providers
        self.master_address = master_address
        self._cluster_token = cluster_token
        self.join_tokens = join_tokens
        self.core = Autoscaler(
            [p.spec for p in cluster.pools],
            new_id=lambda pool: f"{pool}-{secrets.token_hex(3)}",
            max_events=cluster.max_events,
        )
        self._saved_events = 0
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    @property
    def interval(self) -> float:
        return self.cluster.interval

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        store = self.loop.store
        text = store.kv_get(EVENTS_KEY)
        if text:
            try:
                self.core.restore_events(ScaleEvent.from_dict(e) for e in json.loads(text))
            except (ValueError, TypeError, KeyError):
                log.warning("the saved autoscaler events could not be read; starting a new list")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="titan-autoscaler")
        log.info(
            "autoscaler: %d pool(s) from %s: %s",
            len(self.pools),
            self.cluster.path,
            ", ".join(
                f"{p.name} ({p.spec.provider}, {p.spec.min}-{p.spec.max})" for p in self.pools.values()
            ),
        )

    async def stop(self) -> None:
        """Stop deciding, then let each provider stop what it must (local workers are stopped)."""
        await cancel_and_wait(self._task)
        self._task = None

        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        for name, provider in self.providers.items():
            try:
                await provider.close()
            except Exception:
                log.exception("pool %s: closing its provider failed", name)
        self._save_events()

    def wake(self) -> None:
        """Decide now rather than at the next tick."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("autoscaler step failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except asyncio.TimeoutError:
                pass

    # ------------------------------------------------------------------ one step

    async def tick(self) -> None:
        now = self.loop.clock()
        actions: list[Action] = []
        for provider in self.providers.values():
            for launch_id, how in provider.exited():
                actions += self.core.process_exited(launch_id, now, how)
        state = self.loop.state
        actions += self.core.step(now, state.workers.values(), pending_demand(state))
        await self._carry_out(actions)
        self._save_events()

    async def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Launch):
                log.info("pool %s: launching %s: %s", action.pool, action.launch_id, action.reason)
                self._spawn(self._launch(action))
            elif isinstance(action, Drain):
                log.info("pool %s: draining %s: %s", action.pool, action.launch_id, action.reason)
                await self._drain(action)
            elif isinstance(action, Retire):
                self.join_tokens.revoke(action.launch_id)
                self._spawn(self._retire(action))

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _request(self, action: Launch) -> LaunchRequest:
        spec = self.pools[action.pool].spec
        token, expires = self._cluster_token, 0.0
        if spec.provider == "webhook":
            # The external system gets a one-time join token, never the cluster token.
            expires = self.loop.clock() + spec.register_timeout
            # Its worker may claim the pool's tags, and GPU when the pool gives it devices (it adds that tag).
            token = self.join_tokens.mint(
                action.launch_id, spec.name, spec.provider, expires, spec.worker_tags
            )
        return LaunchRequest(
            launch_id=action.launch_id,
            pool=spec.name,
            provider=spec.provider,
            tags=tuple(sorted(spec.tags)),
            slots=spec.slots,
            master=self.master_address,
            token=token,
            token_expires_at=expires,
            tls=self.local_tls,
            cpus=spec.cpus,
            memory_mb=spec.memory_mb,
            gpus=spec.gpus,
        )

    async def _launch(self, action: Launch) -> None:
        try:
            await self.providers[action.pool].launch(self._request(action))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = str(exc) if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"
            log.warning("pool %s: launch %s failed: %s", action.pool, action.launch_id, error)
            await self._carry_out(self.core.launch_failed(action.launch_id, self.loop.clock(), error))
            self._save_events()

    async def _drain(self, action: Drain) -> None:
        state = self.loop.state
        deadline = self.pools[action.pool].spec.drain_deadline
        try:
            await self.loop.call(
                lambda now: state.request_drain(action.worker_id, deadline, now, reason=action.reason)
            )
        except NotFound:
            pass  # gone already: the next step retires it

    async def _retire(self, action: Retire) -> None:
        try:
            await self.providers[action.pool].retire(action.launch_id, action.reason, action.force)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("pool %s: cleaning up after %s failed: %s", action.pool, action.launch_id, exc)

    def _save_events(self) -> None:
        if self.core.event_count == self._saved_events:
            return
        self._saved_events = self.core.event_count
        try:
            self.loop.store.kv_put(EVENTS_KEY, json.dumps([e.to_dict() for e in self.core.events]))
        except Exception as exc:
            log.warning("could not save the autoscaler events: %s", exc)
