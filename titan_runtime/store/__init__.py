"""Durable state behind one narrow contract (`Store`), with SQLite and in-memory backends."""

from __future__ import annotations

from pathlib import Path

from titan_runtime.store.base import MAX_KV_VALUE_BYTES, KvTypeError, Snapshot, Store, StoreError, StoreFull
from titan_runtime.store.memory import MemoryStore
from titan_runtime.store.sqlite import SqliteStore

BACKENDS = ("sqlite", "memory")


def open_store(kind: str, data_dir: Path, fsync: bool = True) -> Store:
    """Open the backend named by `--store` under `data_dir`."""
    if kind == "sqlite":
        return SqliteStore(data_dir / "titan.db", fsync=fsync)
    if kind == "memory":
        return MemoryStore()
    raise StoreError(f"unknown store {kind!r}: use one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "MAX_KV_VALUE_BYTES",
    "KvTypeError",
    "MemoryStore",
    "Snapshot",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreFull",
    "open_store",
]
