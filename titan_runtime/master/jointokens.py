"""One-time join tokens: a credential the master mints for one launch of a webhook pool.

The external system that starts the worker gets this token, never the cluster token. The auth
interceptor admits it only for what a worker needs (its link and artifact downloads), until it
expires, and the first worker to register with it binds it to its worker id: from then on it
admits that worker alone (its reconnects), and another worker presenting it is refused. It is
revoked when the launch ends (descaled, failed, lost). Only a hash of each token is kept, in
memory and in the store's KV namespace `titan/join/`, so a master restart keeps workers in.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from titan_runtime.master.kvrecords import KvRecords

PREFIX = "tjoin1."
KV_PREFIX = "titan/join/"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class JoinToken:
    launch_id: str
    pool: str
    provider: str
    expires_at: float  # unbound and past this: refused
    worker_id: str = ""  # bound to this worker once it registered
    tags: list[str] | None = None  # the pool's, the only tags its worker may claim (None: an older token)


class JoinTokens:
    def __init__(self, store: Any | None = None) -> None:
        self._kept = KvRecords(store, KV_PREFIX, JoinToken)
        self._tokens = self._kept.records

    def mint(
        self, launch_id: str, pool: str, provider: str, expires_at: float, tags: frozenset[str] = frozenset()
    ) -> str:
        token = PREFIX + secrets.token_urlsafe(32)
        digest = _digest(token)
        self._kept.put(digest, JoinToken(launch_id, pool, provider, expires_at, tags=sorted(tags)))
        return token

    def lookup(self, token: str, now: float) -> JoinToken | None:
        """The launch a presented token admits, or None (unknown, revoked, or expired unused)."""
        if not token.startswith(PREFIX):
            return None
        record = self._tokens.get(_digest(token))
        if record is None or (not record.worker_id and now > record.expires_at):
            return None
        return record

    def bind(
        self, token: str, worker_id: str, tags: frozenset[str], known: bool, now: float
    ) -> tuple[JoinToken | None, str]:
        """Consume the token for `worker_id` on its registration: (record, "") or (None, why refused).

        A worker it admits claims no tags its pool lacks (a job's requirement is what keeps its secrets
        on the workers meant for it), and a fresh token takes no worker id the master already knows
        (that would take over the worker's session and its running jobs)."""
        record = self.lookup(token, now)
        if record is None:
            return (
                None,
                "this join token is unknown, expired or revoked; the provider must ask for a new launch",
            )
        if record.worker_id and record.worker_id != worker_id:
            return None, (
                f"this join token was already used by worker {record.worker_id}: a join token admits one "
                "worker once; each launch gets its own"
            )
        if not record.worker_id and known:
            return None, (
                f"worker id {worker_id} is already registered with the master: a join token admits a new "
                "worker only"
            )
        beyond = sorted(tags - set(record.tags)) if record.tags is not None else []
        if beyond:
            granted = ", ".join(record.tags) or "none"
            return None, (
                f"pool {record.pool} does not grant the tags {', '.join(beyond)} (it grants: {granted}); "
                "start the worker with its pool's tags"
            )
        if not record.worker_id:
            record.worker_id = worker_id
            self._kept.save(_digest(token))
        return record, ""

    def revoke(self, launch_id: str) -> None:
        for digest, record in list(self._tokens.items()):
            if record.launch_id == launch_id:
                self._kept.delete(digest)
