"""In-memory store: no durability, for tests and throwaway clusters (`--store memory`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from titan_runtime.core.effects import Changes
from titan_runtime.store.base import (
    FINISHED_STATES,
    RunQuery,
    Snapshot,
    Store,
    dump_row,
    kept,
    load_row,
    parse_int,
    run_columns,
)


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
        running = {run_id for run_id, row in self._runs.items() if run_columns(row)[1] == "RUNNING"}
        return Snapshot(
            runs=[_copy(r) for r in self._runs.values() if r["id"] in running],
            jobs=[_copy(r) for key, r in self._jobs.items() if key[0] in running],
            attempts=[_copy(r) for r in self._attempts.values() if r.get("run_id") in running],
            workers=[_copy(r) for r in self._workers.values()],
            last_seq=max((run_columns(r)[0] for r in self._runs.values()), default=0),
        )

    def read_run(self, run_id: str) -> Snapshot | None:
        if run_id not in self._runs:
            return None
        return Snapshot(
            runs=[_copy(self._runs[run_id])],
            jobs=[_copy(r) for key, r in self._jobs.items() if key[0] == run_id],
            attempts=[_copy(r) for r in self._attempts.values() if r.get("run_id") == run_id],
        )

    def read_job(self, run_id: str, job_id: str) -> Snapshot | None:
        job = self._jobs.get((run_id, job_id))
        if job is None or run_id not in self._runs:
            return None
        return Snapshot(
            runs=[_copy(self._runs[run_id])],
            jobs=[_copy(job)],
            attempts=[
                _copy(r)
                for r in self._attempts.values()
                if r.get("run_id") == run_id and r.get("job_id") == job_id
            ],
        )

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        row = self._runs.get(run_id)
        return None if row is None else _copy(row)

    def _by_seq(self) -> list[dict[str, Any]]:
        return sorted(self._runs.values(), key=lambda r: run_columns(r)[0], reverse=True)

    def job_runs(self, job_id: str, limit: int = 1) -> list[str]:
        return [r["id"] for r in self._by_seq() if (r["id"], job_id) in self._jobs][:limit]

    def list_runs(self, query: RunQuery) -> list[dict[str, Any]]:
        found = []
        for row in self._by_seq():
            seq, state, created_at, _, agent = run_columns(row)
            if (
                created_at >= query.since
                and (not query.before_seq or seq < query.before_seq)
                and (not query.states or state in query.states)
                and (
                    query.agent_run_id is None
                    or agent == query.agent_run_id
                    or (query.agent_run_id == "*" and agent)
                )
            ):
                found.append(_copy(row))
        return found[: query.limit]

    def collectable_runs(self, ended_before: float, keep_latest: int, limit: int) -> list[str]:
        finished = sorted(
            (r for r in self._runs.values() if run_columns(r)[1] in FINISHED_STATES and not kept(r)),
            key=lambda r: run_columns(r)[3],
        )
        beyond = len(finished) - keep_latest if keep_latest > 0 else 0
        return [
            r["id"] for index, r in enumerate(finished) if index < beyond or run_columns(r)[3] < ended_before
        ][:limit]

    def delete_runs(self, run_ids: Sequence[str], key_prefixes: Sequence[str] = ()) -> int:
        doomed = set(run_ids)
        for table in (self._jobs, self._attempts):
            for key in [k for k, r in table.items() if r.get("run_id") in doomed]:
                del table[key]
        for run_id in doomed:
            self._runs.pop(run_id, None)
        keys = {k for k, owner in self._owners.items() if owner in doomed}
        keys |= (
            {k for k in self._kv.keys() | self._sets.keys() if k.startswith(tuple(key_prefixes))}
            if key_prefixes
            else set()
        )
        return sum(self.kv_delete(key) for key in keys)

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
