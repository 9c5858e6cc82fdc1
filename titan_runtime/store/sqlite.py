"""SQLite store: the embedded default. WAL mode, one transaction per batch, fsync per commit by default.

The master hands over everything one event-loop turn changed as a single `write`, so a burst of
thousands of transitions costs one commit (one fsync) instead of thousands: group commit.

The connection runs with synchronous=NORMAL: a commit is written to the WAL file (it survives a
crash of the master's process) without an fsync, and `sync` fsyncs the WAL itself. What SQLite's
synchronous=FULL does in one step is two here, so that the master can send a new job to its worker
while the fsync of its submission runs (see `MasterLoop`). KV changes are synced before they return.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from titan_runtime.core.effects import Changes
from titan_runtime.store.base import (
    SCHEMA_VERSION,
    RunQuery,
    Snapshot,
    Store,
    StoreError,
    StoreFull,
    dump_row,
    load_row,
    parse_int,
    run_columns,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs(id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs(
    run_id TEXT NOT NULL, job_id TEXT NOT NULL, spec TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY(run_id, job_id));
CREATE TABLE IF NOT EXISTS attempts(id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workers(id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kv_sets(key TEXT NOT NULL, member TEXT NOT NULL, PRIMARY KEY(key, member));
CREATE TABLE IF NOT EXISTS kv_owners(key TEXT PRIMARY KEY, owner TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS kv_owners_by_owner ON kv_owners(owner);
CREATE TABLE IF NOT EXISTS audit(seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit(at);
"""
#: What each schema version adds to the one before, applied in order to an older store (a new one
#: is made as version 1 by _SCHEMA, then migrated like any other). Version 2 records which run
#: created each KV key (kv_owners, created by _SCHEMA): keys from before have none. Version 3: the
#: audit log (created by _SCHEMA). Version 4: what finished runs are queried and deleted by, as
#: columns with indexes (finished runs are read from the store, not kept in memory).
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (),
    3: (),
    4: (
        "ALTER TABLE runs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN state TEXT NOT NULL DEFAULT 'RUNNING'",
        "ALTER TABLE runs ADD COLUMN created_at REAL NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN ended_at REAL NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN agent_run_id TEXT NOT NULL DEFAULT ''",
        "UPDATE runs SET seq=coalesce(json_extract(data, '$.seq'), 0),"
        " state=coalesce(json_extract(data, '$.state'), 'RUNNING'),"
        " created_at=coalesce(json_extract(data, '$.created_at'), 0),"
        " ended_at=coalesce(json_extract(data, '$.ended_at'), 0),"
        " agent_run_id=coalesce(json_extract(data, '$.agent_run_id'), '')",
        "CREATE INDEX runs_by_seq ON runs(seq)",
        "CREATE INDEX runs_running ON runs(seq) WHERE state = 'RUNNING'",
        "CREATE INDEX runs_finished ON runs(ended_at) WHERE state != 'RUNNING'",
        "CREATE INDEX runs_by_agent ON runs(agent_run_id, seq) WHERE agent_run_id != ''",
        "ALTER TABLE attempts ADD COLUMN run_id TEXT NOT NULL DEFAULT ''",
        "UPDATE attempts SET run_id=coalesce(json_extract(data, '$.run_id'), '')",
        "CREATE INDEX attempts_by_run ON attempts(run_id)",
        "CREATE INDEX jobs_by_job_id ON jobs(job_id)",
    ),
}
_RUN_COLUMNS = "seq, state, created_at, ended_at, agent_run_id"
#: Runs holding a job id up to which `job_runs` sorts them all (past it, it probes the latest runs).
_FEW_HOLDERS = 1000


def _private(path: Path) -> None:
    """The database, 0600 whatever the umask (it holds every job's env): SQLite creates its WAL and
    shared-memory files with the database's mode, so making the database first is enough; files
    left by an older version are made private too."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError):
            if name.stat().st_mode & 0o077:
                name.chmod(0o600)


class SqliteStore(Store):
    """`fsync=True` (the default): a commit survives a power loss once `sync` has returned.
    `fsync=False`: `sync` does nothing; commits survive a master crash (kill -9), not a machine crash."""

    def __init__(self, path: str | os.PathLike[str], fsync: bool = True) -> None:
        self.path = Path(path)
        self.syncs = fsync
        self._wal = f"{self.path}-wal"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _private(self.path)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            # 64 MiB of page cache instead of 2: a commit that touches 100,000 jobs (a failure that
            # settles a big run) rewrites pages all over the table, and thrashes a small cache.
            self._db.execute("PRAGMA cache_size=-65536")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"cannot open the store at {self.path}: {exc}; check that the data dir is writable "
                "and its disk not full"
            ) from exc

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:  # just made by _SCHEMA: version 1
            self._db.execute("INSERT INTO meta VALUES('schema_version', '1')")
            row = ("1",)
        version = int(row[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store at {self.path} has schema version {row[0]}, newer than this Titan's "
                f"{SCHEMA_VERSION}: upgrade titan-runtime or use another --data-dir"
            )
        with self._transaction() as db:
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]:
                    db.execute(statement)
            db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error. A full disk is a StoreFull.

        SQLite rolls a transaction back by itself after some errors (SQLITE_FULL among them): a
        ROLLBACK then would fail and hide the error that matters, so it is only sent if needed."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc):
                raise StoreFull(f"the disk of {self.path} is full: {exc}") from exc
            raise

    def _rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [load_row(data) for (data,) in self._db.execute(sql, args)]

    def _jobs(self, where: str, *args: Any) -> list[dict[str, Any]]:
        return [
            {**load_row(data), "spec": load_row(spec)}
            for spec, data in self._db.execute(
                f"SELECT spec, data FROM jobs WHERE {where} ORDER BY rowid", args
            )
        ]

    def load(self) -> Snapshot:
        running = "run_id IN (SELECT id FROM runs WHERE state = 'RUNNING')"
        (last_seq,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM runs").fetchone()
        return Snapshot(
            runs=self._rows("SELECT data FROM runs WHERE state = 'RUNNING' ORDER BY rowid"),
            jobs=self._jobs(running),
            attempts=self._rows(f"SELECT data FROM attempts WHERE {running} ORDER BY rowid"),
            workers=self._rows("SELECT data FROM workers ORDER BY rowid"),
            last_seq=last_seq,
        )

    def read_run(self, run_id: str) -> Snapshot | None:
        runs = self._rows("SELECT data FROM runs WHERE id = ?", run_id)
        if not runs:
            return None
        return Snapshot(
            runs=runs,
            jobs=self._jobs("run_id = ?", run_id),
            attempts=self._rows("SELECT data FROM attempts WHERE run_id = ? ORDER BY rowid", run_id),
        )

    def read_job(self, run_id: str, job_id: str) -> Snapshot | None:
        runs = self._rows("SELECT data FROM runs WHERE id = ?", run_id)
        jobs = self._jobs("run_id = ? AND job_id = ?", run_id, job_id) if runs else []
        if not jobs:
            return None
        attempts = self._rows(  # the run's attempts, on its index; the job's picked from them
            "SELECT data FROM attempts WHERE run_id = ? AND json_extract(data, '$.job_id') = ? ORDER BY rowid",
            run_id,
            job_id,
        )
        return Snapshot(runs=runs, jobs=jobs, attempts=attempts)

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        found = self._rows("SELECT data FROM runs WHERE id = ?", run_id)
        return found[0] if found else None

    def job_runs(self, job_id: str, limit: int = 1) -> list[str]:
        # An id held by few runs: those runs, sorted. An id held by many (every run has a "main"):
        # the latest runs first, each probed on the primary key, until enough are found; sorting
        # all holders of a common id took 160 ms in a store of 100,000 runs.
        few = self._db.execute(
            "SELECT runs.id FROM runs WHERE runs.id IN (SELECT run_id FROM jobs WHERE job_id = ? LIMIT ?)"
            " ORDER BY runs.seq DESC",
            (job_id, _FEW_HOLDERS + 1),
        ).fetchall()
        if len(few) <= _FEW_HOLDERS:
            return [run_id for (run_id,) in few[:limit]]
        rows = self._db.execute(
            "SELECT id FROM runs WHERE EXISTS (SELECT 1 FROM jobs WHERE jobs.run_id = runs.id AND jobs.job_id = ?)"
            " ORDER BY seq DESC LIMIT ?",
            (job_id, limit),
        )
        return [run_id for (run_id,) in rows]

    def list_runs(self, query: RunQuery) -> list[dict[str, Any]]:
        where, args = ["created_at >= ?"], [query.since]
        if query.before_seq:
            where.append("seq < ?")
            args.append(query.before_seq)
        if query.states:
            where.append(f"state IN ({', '.join('?' * len(query.states))})")
            args.extend(sorted(query.states))
        if query.agent_run_id == "*":
            where.append("agent_run_id != ''")
        elif query.agent_run_id is not None:
            where.append("agent_run_id = ?")
            args.append(query.agent_run_id)
        args.append(query.limit)
        return self._rows(
            f"SELECT data FROM runs WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?", *args
        )

    def collectable_runs(self, ended_before: float, keep_latest: int, limit: int) -> list[str]:
        not_kept = "state != 'RUNNING' AND lower(coalesce(json_extract(data, '$.labels.keep'), '')) != 'true'"
        found = [
            run_id
            for (run_id,) in self._db.execute(
                f"SELECT id FROM runs WHERE {not_kept} AND ended_at < ? ORDER BY ended_at LIMIT ?",
                (ended_before, limit),
            )
        ]
        if keep_latest > 0 and len(found) < limit:
            beyond = self._db.execute(
                f"SELECT id FROM (SELECT id, ended_at FROM runs WHERE {not_kept} ORDER BY ended_at DESC"
                " LIMIT -1 OFFSET ?) ORDER BY ended_at LIMIT ?",
                (keep_latest, limit),
            )
            found.extend(run_id for (run_id,) in beyond if run_id not in found)
        return found[:limit]

    def delete_runs(self, run_ids: Sequence[str], key_prefixes: Sequence[str] = ()) -> int:
        removed = 0
        with self._transaction() as db:
            for run_id in run_ids:
                db.execute("DELETE FROM attempts WHERE run_id = ?", (run_id,))
                db.execute("DELETE FROM jobs WHERE run_id = ?", (run_id,))
                db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
                owned = [key for (key,) in db.execute("SELECT key FROM kv_owners WHERE owner = ?", (run_id,))]
                for key in owned:
                    removed += self._delete_key(key)
            for prefix in key_prefixes:
                removed += sum(self._delete_key(key) for key in self.keys_under(prefix))
        self.sync()
        return removed

    def _delete_key(self, key: str) -> int:
        db = self._db
        found = db.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount
        found += db.execute("DELETE FROM kv_sets WHERE key = ?", (key,)).rowcount
        db.execute("DELETE FROM kv_owners WHERE key = ?", (key,))
        return 1 if found else 0

    def write(self, changes: Changes) -> None:
        with self._transaction() as db:
            if changes.runs:
                db.executemany(
                    f"INSERT INTO runs(id, data, {_RUN_COLUMNS}) VALUES(?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET data=excluded.data, seq=excluded.seq, state=excluded.state,"
                    " created_at=excluded.created_at, ended_at=excluded.ended_at, agent_run_id=excluded.agent_run_id",
                    [(r["id"], dump_row(r), *run_columns(r)) for r in changes.runs],
                )
            if changes.attempts:
                db.executemany(
                    "INSERT INTO attempts(id, data, run_id) VALUES(?, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET data=excluded.data",
                    [(r["id"], dump_row(r), r.get("run_id", "")) for r in changes.attempts],
                )
            if changes.workers:
                db.executemany(
                    "INSERT INTO workers(id, data) VALUES(?, ?) ON CONFLICT(id) DO UPDATE SET data=excluded.data",
                    [(r["id"], dump_row(r)) for r in changes.workers],
                )
            if changes.new_jobs:
                db.executemany(
                    "INSERT INTO jobs(run_id, job_id, spec, data) VALUES(?, ?, ?, ?)",
                    (  # a generator: 100,000 rows are not all held as text at once
                        (
                            r["run_id"],
                            r["job_id"],
                            dump_row(r["spec"]),
                            dump_row({k: v for k, v in r.items() if k != "spec"}),
                        )
                        for r in changes.new_jobs
                    ),
                )
            if changes.jobs:
                db.executemany(
                    "UPDATE jobs SET data=? WHERE run_id=? AND job_id=?",
                    ((dump_row(r), r["run_id"], r["job_id"]) for r in changes.jobs),
                )

    def sync(self) -> None:
        """fdatasync the WAL, where every commit is (its own descriptor: safe beside the connection).

        Opened each time rather than kept: SQLite may delete and recreate the file."""
        if not self.syncs:
            return
        try:
            fd = os.open(self._wal, os.O_RDONLY)
        except FileNotFoundError:  # checkpointed and removed: the commits are in the database file
            fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def kv_get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def kv_exists(self, key: str) -> bool:
        found = self._db.execute(
            "SELECT 1 FROM kv WHERE key=? UNION ALL SELECT 1 FROM kv_sets WHERE key=? LIMIT 1", (key, key)
        ).fetchone()
        return found is not None

    def kv_owner(self, key: str) -> str | None:
        if not self.kv_exists(key):
            return None
        row = self._db.execute("SELECT owner FROM kv_owners WHERE key=?", (key,)).fetchone()
        return "" if row is None else row[0]

    def kv_owned(self, owner: str) -> int:
        return self._db.execute("SELECT count(*) FROM kv_owners WHERE owner=?", (owner,)).fetchone()[0]

    def _own(self, key: str, owner: str) -> None:
        """Record who created `key` (called before it is written, inside the transaction)."""
        if owner and not self.kv_exists(key):
            self._db.execute("INSERT OR REPLACE INTO kv_owners(key, owner) VALUES(?, ?)", (key, owner))

    def _put(self, key: str, value: str, owner: str) -> None:
        self._own(key, owner)
        self._db.execute(
            "INSERT INTO kv(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def kv_put(self, key: str, value: str, owner: str = "") -> None:
        with self._transaction():
            self._put(key, value, owner)
        self.sync()

    def kv_delete(self, key: str) -> bool:
        with self._transaction():
            removed = self._delete_key(key)
        self.sync()
        return removed > 0

    def kv_incr(self, key: str, delta: int, owner: str = "") -> int:
        with self._transaction():
            number = parse_int(key, self.kv_get(key)) + delta
            self._put(key, str(number), owner)
        self.sync()
        return number

    def kv_cas(self, key: str, expected: str | None, value: str, owner: str = "") -> bool:
        with self._transaction():
            if self.kv_get(key) != expected:
                return False
            self._put(key, value, owner)
        self.sync()
        return True

    def kv_sadd(self, key: str, member: str, owner: str = "") -> bool:
        with self._transaction() as db:
            self._own(key, owner)
            added = db.execute(
                "INSERT OR IGNORE INTO kv_sets(key, member) VALUES(?, ?)", (key, member)
            ).rowcount
        self.sync()
        return added == 1

    def kv_srem(self, key: str, member: str) -> bool:
        with self._transaction() as db:
            removed = db.execute("DELETE FROM kv_sets WHERE key=? AND member=?", (key, member)).rowcount
            if removed and not self.kv_exists(key):
                db.execute("DELETE FROM kv_owners WHERE key=?", (key,))
        self.sync()
        return removed == 1

    def audit_append(self, entries: Sequence[dict[str, Any]]) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO audit(at, data) VALUES(?, ?)", [(e["at"], dump_row(e)) for e in entries]
            )

    def audit_read(self, since: float = 0.0, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT data FROM audit WHERE at >= ? ORDER BY seq DESC LIMIT ?", (since, limit)
        ).fetchall()
        return [load_row(data) for (data,) in reversed(rows)]

    def kv_smembers(self, key: str) -> list[str]:
        return sorted(m for (m,) in self._db.execute("SELECT member FROM kv_sets WHERE key=?", (key,)))

    def kv_keys(self, prefix: str, after: str, limit: int) -> list[tuple[str, str]]:
        # A range on the primary keys (SQLite compares text as UTF-8 bytes, in code point order):
        # from the prefix, or just past `after`, to the first string that no longer starts with it.
        low = max(prefix, after)
        high = prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else None
        bound = "" if high is None else " AND key < :high"
        rows = self._db.execute(
            f"SELECT key, max(kind) FROM (SELECT key, 'set' AS kind FROM kv_sets WHERE key >= :low{bound} "
            f"UNION ALL SELECT key, 'value' FROM kv WHERE key >= :low{bound}) "
            "WHERE key > :after GROUP BY key ORDER BY key LIMIT :limit",
            {"low": low, "high": high, "after": after, "limit": limit},
        ).fetchall()
        return [(key, kind) for key, kind in rows]  # max(kind): "value" over "set"

    def close(self) -> None:
        self._db.close()
