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

SCHEMA_VERSION = 3

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


class StoreFull(StoreError):
    """The store's disk is full: the write did not happen (and nothing else changed)."""


class KvTypeError(ValueError):
    """A KV operation that does not fit the value stored (incr on a non-integer)."""


@dataclass
class Snapshot:
    """Everything persisted, in insertion order."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    workers: list[dict[str, Any]] = field(default_factory=list)


class Store(abc.ABC):
    """Durable state. A KV call that changes something is durable when it returns; `write` is
    made durable by `sync`, so that the master can act on a batch while its fsync runs.

    Calls come from the master's event loop thread, except `sync`, which may run on another
    thread at the same time (it must not touch what the other calls use)."""

    #: True when `sync` does real work (an fsync): worth a thread when there is work to do meanwhile.
    syncs: bool = False

    @abc.abstractmethod
    def load(self) -> Snapshot: ...

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
