"""The storage contract every backend implements, and nothing more.

Kept narrow on purpose (huey's storage layer is the model): the master holds the live state in
memory and hands the store whole-row snapshots to persist in one transaction (`save`), reads
everything back once at start-up (`load`), and uses the store directly only for the KV API.
A PostgreSQL backend for standby masters fits behind the same methods.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from titan_runtime.core.effects import Changes

SCHEMA_VERSION = 4

#: Largest KV value or set member, in bytes of UTF-8.
MAX_KV_VALUE_BYTES = 1024 * 1024


def dump_row(row: dict[str, Any]) -> str:
    """A row as compact JSON. orjson: a 100,000-job commit or restart spends 0.05 s on it, not 0.7
    (docs/performance.md). The standard library takes what orjson refuses (an integer past 64 bits)."""
    try:
        return orjson.dumps(row).decode()
    except TypeError:
        return json.dumps(row, separators=(",", ":"), ensure_ascii=False)


def load_row(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class StoreError(RuntimeError):
    """The store cannot be opened or used; the message says what to do."""


class Fenced(StoreError):
    """This master no longer holds the leader's lease: its commits are refused (it must stop)."""


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds the leader's lease of a shared store, and for how much longer (seconds)."""

    epoch: int
    holder: str
    address: str
    expires_in: float


class StoreFull(StoreError):
    """The store's disk is full: the write did not happen (and nothing else changed)."""


class KvTypeError(ValueError):
    """A KV operation that does not fit the value stored (incr on a non-integer)."""


@dataclass
class Snapshot:
    """Rows as persisted, in insertion order: what a restart needs (`load`), or one run (`read_run`)."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int = 0  # the highest run seq ever given, finished runs included


@dataclass(frozen=True)
class RunQuery:
    """Which run rows `list_runs` gives, latest (highest seq) first. Name and label filters are the
    caller's: they are globs and maps, checked on the rows."""

    states: frozenset[str] = frozenset()  # any of these; empty: any state
    since: float = 0.0  # created at or after
    before_seq: int = 0  # seq below this; 0: from the latest
    agent_run_id: str | None = None  # None: any; "*": any run of an agent; else that agent run's
    limit: int = 100


#: The run states that are final: such a run is only read, and retention may delete it.
FINISHED_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")


def run_columns(row: dict[str, Any]) -> tuple[int, str, float, float, str]:
    """What a backend indexes of a run row: seq, state, created_at, ended_at, agent_run_id."""
    return (
        int(row.get("seq", 0)),
        str(row.get("state", "RUNNING")),
        float(row.get("created_at", 0.0)),
        float(row.get("ended_at", 0.0)),
        str(row.get("agent_run_id", "")),
    )


def kept(row: dict[str, Any]) -> bool:
    """A run labelled keep=true: retention never deletes it."""
    return str((row.get("labels") or {}).get("keep", "")).lower() == "true"


class Store(abc.ABC):
    """Durable state. A KV call that changes something is durable when it returns; `write` is
    made durable by `sync`, so that the master can act on a batch while its fsync runs.

    Calls come from the master's event loop thread, except `sync`, which may run on another
    thread at the same time (it must not touch what the other calls use)."""

    #: True when `sync` does real work (an fsync): worth a thread when there is work to do meanwhile.
    syncs: bool = False
    #: True for a store masters can share (PostgreSQL): one holds its lease and leads, the others
    #: wait (acquire_lease, renew_lease, release_lease, lease_holder; docs/ha.md).
    supports_lease: bool = False

    def acquire_lease(self, holder: str, address: str, ttl: float) -> int | None:
        """Take (or renew) the leader's lease: its epoch, or None while another master holds it."""
        raise StoreError("this store is not shared: only PostgreSQL's has a leader's lease")

    def renew_lease(self, ttl: float) -> bool:
        raise StoreError("this store is not shared: only PostgreSQL's has a leader's lease")

    def release_lease(self) -> None:
        raise StoreError("this store is not shared: only PostgreSQL's has a leader's lease")

    def lease_holder(self) -> LeaseHolder | None:
        return None

    @abc.abstractmethod
    def load(self) -> Snapshot:
        """What a restart needs: the runs still RUNNING with their jobs and attempts, every worker,
        and the last run seq. Finished runs stay in the store: a restart costs the same after a
        million finished jobs as after none."""

    @abc.abstractmethod
    def read_run(self, run_id: str) -> Snapshot | None:
        """One run, its jobs (each row with its "spec") and its attempts; None if there is none."""

    @abc.abstractmethod
    def read_job(self, run_id: str, job_id: str) -> Snapshot | None:
        """One job of a run, as `read_run` has it (the run's row, the job's row, its attempts),
        without reading the run's other jobs; None if there is no such job."""

    @abc.abstractmethod
    def run_row(self, run_id: str) -> dict[str, Any] | None:
        """One run's own row, without its jobs."""

    @abc.abstractmethod
    def job_runs(self, job_id: str, limit: int = 1) -> list[str]:
        """The runs that hold a job of that id, latest first (a bare job id means the latest)."""

    @abc.abstractmethod
    def list_runs(self, query: RunQuery) -> list[dict[str, Any]]:
        """Run rows matching `query`, highest seq first, at most `query.limit`."""

    @abc.abstractmethod
    def collectable_runs(self, ended_before: float, keep_latest: int, limit: int) -> list[str]:
        """Up to `limit` finished runs retention may delete, oldest first: those that ended before
        `ended_before`, and those beyond the `keep_latest` latest finished runs (0: no such count).
        A run labelled keep=true is never one of them (nor counted among the latest)."""

    @abc.abstractmethod
    def delete_runs(self, run_ids: Sequence[str], key_prefixes: Sequence[str] = ()) -> int:
        """Delete runs with their jobs and attempts, the KV keys (values and sets) they created, and
        every key under `key_prefixes`, in one transaction, durable when it returns. Returns the
        number of KV keys deleted."""

    def save(self, changes: Changes) -> None:
        """Upsert every row of `changes` atomically and durably: all of them, or none."""
        self.write(changes)
        self.sync()

    @abc.abstractmethod
    def write(self, changes: Changes) -> None:
        """Upsert every row of `changes` atomically: all of them, or none. Once this returns the
        rows survive a crash of the master's process; they survive a crash of the machine once
        `sync` has returned too."""

    def sync(self) -> None:  # noqa: B027 - nothing to do for backends without a disk
        """Make everything written so far survive a machine crash (an fsync)."""

    @abc.abstractmethod
    def kv_get(self, key: str) -> str | None: ...

    @abc.abstractmethod
    def kv_put(self, key: str, value: str, owner: str = "") -> None:
        """Set a value. `owner` (the run whose job created the key) is recorded when the key is new."""

    @abc.abstractmethod
    def kv_exists(self, key: str) -> bool:
        """Whether a value or a set of that name exists."""

    @abc.abstractmethod
    def kv_owner(self, key: str) -> str | None:
        """The run whose job created `key`, "" if the cluster did (or no run), None if it does not exist."""

    @abc.abstractmethod
    def kv_owned(self, owner: str) -> int:
        """How many keys (values and sets) `owner` created that still exist."""

    @abc.abstractmethod
    def kv_delete(self, key: str) -> bool:
        """Delete a value and a set of that name; True if either existed."""

    @abc.abstractmethod
    def kv_incr(self, key: str, delta: int, owner: str = "") -> int:
        """Add `delta` to an integer value (a missing key counts as 0) and return the new value."""

    @abc.abstractmethod
    def kv_cas(self, key: str, expected: str | None, value: str, owner: str = "") -> bool:
        """Set `key` to `value` only if it currently holds `expected` (None: only if absent)."""

    @abc.abstractmethod
    def kv_sadd(self, key: str, member: str, owner: str = "") -> bool:
        """Add to a set; True if the member was new."""

    @abc.abstractmethod
    def kv_srem(self, key: str, member: str) -> bool:
        """Remove from a set; True if the member was there."""

    @abc.abstractmethod
    def kv_smembers(self, key: str) -> list[str]:
        """The members, sorted."""

    def keys_under(self, prefix: str) -> list[str]:
        """Every KV key starting with `prefix`, read a page at a time."""
        keys: list[str] = []
        after = ""
        while page := self.kv_keys(prefix, after, 1000):
            keys.extend(key for key, _ in page)
            after = page[-1][0]
        return keys

    @abc.abstractmethod
    def kv_keys(self, prefix: str, after: str, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` keys that start with `prefix` and sort after `after`, in order, each with
        its kind ("value" or "set"; a name that is both is listed once, as "value")."""

    @abc.abstractmethod
    def audit_append(self, entries: Sequence[dict[str, Any]]) -> None:
        """Append audit entries (each with its time `at`), in one write. Durable with the next
        `sync`: the master's next commit, not at once."""

    @abc.abstractmethod
    def audit_read(self, since: float = 0.0, limit: int = 1000) -> list[dict[str, Any]]:
        """The latest `limit` entries at or after `since`, oldest first."""

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release files and connections."""


def parse_int(key: str, value: str | None) -> int:
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        raise KvTypeError(f"cannot incr {key!r}: its value {value[:40]!r} is not an integer") from None
