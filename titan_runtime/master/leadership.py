"""The leader's lease of a store several masters share (PostgreSQL): wait for it, keep it, and say
when it is lost. Only the holder serves; the others wait as standbys, and take over once its lease
runs out (its master died, or lost the database), restoring state as a restart does.

The lease is renewed every third of its length from a thread (the store's calls block); a master
that cannot renew it within its length has lost it, and stops: its store refuses its commits from
then on anyway (store/postgres.py fences every write with the lease's epoch). Run masters under a
supervisor that starts them again: a master that stopped this way comes back as a standby.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

from titan_runtime.store import Store

log = logging.getLogger("titan.master")

#: Default seconds a lease lasts without renewal (--lease-ttl).
LEASE_TTL = 3.0
#: Seconds between the log lines of a standby that waits.
STANDBY_SAY_EVERY = 60.0


class Leadership:
    def __init__(
        self, store: Store, ttl: float = LEASE_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.epoch = 0
        self.lost = ""  # why the lease was lost ("" while it is held)
        #: Where the leader listens, as a standby last read it ("" while none holds the lease).
        self.leader_address = ""
        self._clock = clock
        self._renewing: asyncio.Task[None] | None = None

    async def acquire(self, address: str) -> int:
        """Wait until this master holds the lease; its epoch. Says once a minute who leads meanwhile."""
        said = -STANDBY_SAY_EVERY
        while True:
            epoch = await asyncio.to_thread(self.store.acquire_lease, self.holder, address, self.ttl)
            if epoch is not None:
                self.epoch = epoch
                log.info("leading: holds the store's lease (epoch %d)", epoch)
                return epoch
            leader = await asyncio.to_thread(self.store.lease_holder)
            self.leader_address = leader.address if leader is not None and leader.expires_in > 0 else ""
            if self._clock() - said >= STANDBY_SAY_EVERY:
                said = self._clock()
                where = f"{leader.holder} at {leader.address or 'an address not yet said'}" if leader else "?"
                log.info("standby: the master %s leads; waiting for its lease to run out", where)
            await asyncio.sleep(self.ttl / 3)

    async def advertise(self, address: str) -> None:
        """Say where this leader listens (known once it has bound its port)."""
        await asyncio.to_thread(self.store.acquire_lease, self.holder, address, self.ttl)

    def keep(self, on_lost: Callable[[str], None]) -> None:
        """Renew the lease until stopped; `on_lost(why)` once it cannot be."""
        self._renewing = asyncio.get_running_loop().create_task(self._renew(on_lost), name="titan-lease")

    async def _renew(self, on_lost: Callable[[str], None]) -> None:
        renewed = self._clock()
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                if await asyncio.to_thread(self.store.renew_lease, self.ttl):
                    renewed = self._clock()
                    continue
                why = "another master holds the store's lease now"
            except Exception as exc:  # the database is unreachable: keep trying while the lease lasts
                if self._clock() - renewed < self.ttl:
                    log.warning("cannot renew the store's lease (%s); trying again", exc)
                    continue
                why = f"the store's lease ran out: it could not be renewed ({exc})"
            self.lost = f"this master stepped down: {why} (epoch {self.epoch})"
            log.critical(self.lost)
            on_lost(self.lost)
            return

    async def release(self) -> None:
        """Stop renewing and give the lease up (a clean stop): a standby takes over at once."""
        if self._renewing is not None:
            self._renewing.cancel()
            self._renewing = None
        if not self.lost:
            try:
                await asyncio.to_thread(self.store.release_lease)
            except Exception as exc:
                log.warning(
                    "could not give the store's lease up (%s): a standby waits for it to run out", exc
                )
