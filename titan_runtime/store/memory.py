"""In-memory store: no durability, for tests and throwaway clusters (`--store memory`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from titan_runtime.core.effects import Changes
from titan_runtime.store.base import Snapshot, Store, dump_row, load_row, parse_int


def _copy(row: dict[str, Any]) -> dict[str, Any]:
    # The same JSON round trip as the SQLite backend's gives exactly what it gives back.
    return load_row(dump_row(row))


#: Audit entries a store in memory keeps (the oldest go first).
MEMORY_AUDIT_ENTRIES = 100_000


class MemoryStore(Store):
    def __init__(self) -> None:
        self._runs: dict[str, dict[str, Any]] = {}
        self._jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self._attempts: dict[str, dict[str, Any]] = {}
        self._workers: dict[str, dict[str, Any]] = {}
        self._kv: dict[str, str] = {}
        self._sets: dict[str, set[str]] = {}
        self._owners: dict[str, str] = {}  # key -> the run that created it
        self._audit: list[dict[str, Any]] = []

    def load(self) -> Snapshot:
        return Snapshot(
            runs=[_copy(r) for r in self._runs.values()],
            jobs=[_copy(r) for r in self._jobs.values()],
            attempts=[_copy(r) for r in self._attempts.values()],
            workers=[_copy(r) for r in self._workers.values()],
        )

    def write(self, changes: Changes) -> None:
        for row in changes.runs:
            self._runs[row["id"]] = _copy(row)
        for row in changes.new_jobs:
            self._jobs[(row["run_id"], row["job_id"])] = _copy(row)
        for row in changes.jobs:
            self._jobs[(row["run_id"], row["job_id"])].update(_copy(row))
        for row in changes.attempts:
            self._attempts[row["id"]] = _copy(row)
        for row in changes.workers:
            self._workers[row["id"]] = _copy(row)

    def kv_get(self, key: str) -> str | None:
        return self._kv.get(key)

    def _own(self, key: str, owner: str) -> None:
        if owner and not self.kv_exists(key):
            self._owners[key] = owner

    def kv_put(self, key: str, value: str, owner: str = "") -> None:
        self._own(key, owner)
        self._kv[key] = value

    def kv_exists(self, key: str) -> bool:
        return key in self._kv or key in self._sets

    def kv_owner(self, key: str) -> str | None:
        return self._owners.get(key, "") if self.kv_exists(key) else None

    def kv_owned(self, owner: str) -> int:
        return sum(1 for o in self._owners.values() if o == owner)

    def kv_delete(self, key: str) -> bool:
        had_value = self._kv.pop(key, None) is not None
        had_set = self._sets.pop(key, None) is not None
        self._owners.pop(key, None)
        return had_value or had_set

    def kv_incr(self, key: str, delta: int, owner: str = "") -> int:
        number = parse_int(key, self._kv.get(key)) + delta
        self.kv_put(key, str(number), owner)
        return number

    def kv_cas(self, key: str, expected: str | None, value: str, owner: str = "") -> bool:
        if self._kv.get(key) != expected:
            return False
        self.kv_put(key, value, owner)
        return True

    def kv_sadd(self, key: str, member: str, owner: str = "") -> bool:
        self._own(key, owner)
        members = self._sets.setdefault(key, set())
        if member in members:
            return False
        members.add(member)
        return True

    def kv_srem(self, key: str, member: str) -> bool:
        members = self._sets.get(key)
        if not members or member not in members:
            return False
        members.discard(member)
        if not members:
            del self._sets[key]
            if key not in self._kv:
                self._owners.pop(key, None)
        return True

    def audit_append(self, entries: Sequence[dict[str, Any]]) -> None:
        self._audit.extend(_copy(e) for e in entries)
        del self._audit[:-MEMORY_AUDIT_ENTRIES]  # a store in memory keeps the latest only

    def audit_read(self, since: float = 0.0, limit: int = 1000) -> list[dict[str, Any]]:
        found = [_copy(e) for e in self._audit if e["at"] >= since]
        return found[-limit:] if limit > 0 else []

    def kv_smembers(self, key: str) -> list[str]:
        return sorted(self._sets.get(key, ()))

    def kv_keys(self, prefix: str, after: str, limit: int) -> list[tuple[str, str]]:
        kinds = {key: "set" for key in self._sets} | {key: "value" for key in self._kv}
        found = sorted(k for k in kinds if k.startswith(prefix) and k > after)
        return [(key, kinds[key]) for key in found[:limit]]
