"""The audit log: every call that changes something, who made it, from where, on what, and how it
ended, appended to the store once the call is over (the guard interceptor calls `record`).

Who is told by the credential's kind and what it names (the cluster token, a job of run R, the
join token of launch L), never by the token itself. An entry is written to SQLite's WAL when the
call ends, and made durable by the master's next commit. `titan-runtime audit` reads it back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from titan_runtime.master.auth import Credentials, bearer
from titan_runtime.master.policy import is_mutating
from titan_runtime.store import Store, StoreError

log = logging.getLogger("titan.master.audit")

#: Request fields that name what a call is about, the first one set wins.
TARGET_FIELDS = ("run_id", "ref", "name", "key", "id", "worker")
MAX_TARGET = 200


def target_of(request: Any) -> str:
    for name in TARGET_FIELDS:
        value = getattr(request, name, "")
        if isinstance(value, str) and value:
            return value[:MAX_TARGET]
    return ""


class AuditLog:
    def __init__(
        self, store: Store, credentials: Credentials, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._credentials = credentials
        self._clock = clock

    def wants(self, method: str, request: Any) -> bool:
        return is_mutating(method, request)

    def who(self, metadata: Sequence[tuple[str, Any]] | None) -> tuple[str, str]:
        """(who, kind) for the token in `metadata`."""
        token = bearer(metadata)
        if not token:
            return "no token", "none"
        caller = self._credentials.identify(token)
        if caller is None:
            return "a wrong token", "wrong"
        return caller.describe(), caller.kind.value

    def record(self, method: str, metadata: Any, peer: str, request: Any, outcome: str) -> None:
        who, kind = self.who(metadata)
        entry = {
            "at": self._clock(),
            "who": who,
            "kind": kind,
            "peer": peer,
            "rpc": method.rsplit("/", 1)[-1],
            "target": target_of(request),
            "outcome": outcome,
        }
        try:
            self._store.audit_append([entry])
        except StoreError as exc:  # a full disk: the call's own outcome stands
            log.warning("audit entry not stored (%s): %s", exc, entry)
