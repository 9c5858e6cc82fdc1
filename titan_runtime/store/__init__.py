"""Durable state behind one narrow contract (`Store`), with SQLite and in-memory backends."""

from __future__ import annotations

from pathlib import Path

from titan_runtime.store.base import MAX_KV_VALUE_BYTES, KvTypeError, Snapshot, Store, StoreError, StoreFull
from titan_runtime.store.memory import MemoryStore
from titan_runtime.store.sqlite import SqliteStore

BACKENDS = ("sqlite", "memory", "postgresql://...")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(kind: str) -> bool:
    return kind.startswith(POSTGRES_SCHEMES)


def describe_store(kind: str) -> str:
    """`--store` as logs and messages may show it (a PostgreSQL URL without its password)."""
    if is_postgres(kind):
        from titan_runtime.store.postgres import redact

        return redact(kind)
    return kind


def open_store(kind: str, data_dir: Path, fsync: bool = True) -> Store:
    """Open the backend named by `--store`: SQLite under `data_dir`, memory, or a PostgreSQL URL."""
    if kind == "sqlite":
        return SqliteStore(data_dir / "titan.db", fsync=fsync)
    if kind == "memory":
        return MemoryStore()
    if is_postgres(kind):
        from titan_runtime.store.postgres import PostgresStore  # psycopg loads only for it

        return PostgresStore(kind)
    raise StoreError(f"unknown store {describe_store(kind)!r}: use one of {', '.join(BACKENDS)}")


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
    "describe_store",
    "is_postgres",
    "open_store",
]
