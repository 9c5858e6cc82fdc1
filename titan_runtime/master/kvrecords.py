"""Records a master keeps by key in memory and in the store: named tokens, join tokens.

Each record is a dataclass stored as JSON under `PREFIX + key`, and its key in the set `PREFIX`,
in the store's KV namespace (the `titan/` prefix is refused to users), so a master restart finds
them. `store` None keeps them in memory only (tests).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Generic, TypeVar

R = TypeVar("R")


class KvRecords(Generic[R]):
    def __init__(self, store: Any | None, prefix: str, kind: type[R]) -> None:
        self._store = store
        self._prefix = prefix
        self.records: dict[str, R] = {}
        if store is not None:
            for key in store.kv_smembers(prefix):
                text = store.kv_get(prefix + key)
                if text:
                    self.records[key] = kind(**json.loads(text))

    def put(self, key: str, record: R) -> None:
        self.records[key] = record
        self.save(key)

    def delete(self, key: str) -> None:
        self.records.pop(key, None)
        self.save(key)

    def save(self, key: str) -> None:
        """Write the record of `key` as it is now (after a change to it), or its absence."""
        if self._store is None:
            return
        record = self.records.get(key)
        if record is None:
            self._store.kv_delete(self._prefix + key)
            self._store.kv_srem(self._prefix, key)
        else:
            self._store.kv_put(self._prefix + key, json.dumps(asdict(record)))  # type: ignore[call-overload]
            self._store.kv_sadd(self._prefix, key)
