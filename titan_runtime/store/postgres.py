"""PostgreSQL store (psycopg 3, the `postgres` extra): the store several masters can share.

The same contract and the same rows as SQLite (store/sqlite.py): each record is its JSON text,
beside the columns it is queried by. A commit is durable when it returns (PostgreSQL's own WAL
and fsync), so `sync` has nothing to do. One connection, used by one thread at a time (psycopg
serialises them), as the SQLite store's is.

The schema is versioned like SQLite's: a `meta` row holds the version, and `_MIGRATIONS` are
applied in order, under an advisory lock, so that two masters starting on one database at the
same moment migrate it once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from titan_runtime.core.effects import Changes
from titan_runtime.store.base import (
    Fenced,
    LeaseHolder,
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

#: This backend's schema version, and what each version adds to the one before (version 1 makes
#: the tables of SQLite's version 4, the first this backend had).
PG_SCHEMA_VERSION = 2
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # Version 2: the leader's lease (one row, "leader"): masters sharing the database elect one.
    2: (
        "CREATE TABLE lease(name TEXT PRIMARY KEY, epoch BIGINT NOT NULL, holder TEXT NOT NULL,"
        " address TEXT NOT NULL DEFAULT '', expires_at TIMESTAMPTZ NOT NULL)",
    ),
    1: (
        'CREATE TABLE runs(id TEXT COLLATE "C" PRIMARY KEY, pos BIGSERIAL, data TEXT NOT NULL,'
        " seq BIGINT NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'RUNNING',"
        " created_at DOUBLE PRECISION NOT NULL DEFAULT 0, ended_at DOUBLE PRECISION NOT NULL DEFAULT 0,"
        " agent_run_id TEXT NOT NULL DEFAULT '')",
        "CREATE INDEX runs_by_seq ON runs(seq)",
        "CREATE INDEX runs_running ON runs(seq) WHERE state = 'RUNNING'",
        "CREATE INDEX runs_finished ON runs(ended_at) WHERE state != 'RUNNING'",
        "CREATE INDEX runs_by_agent ON runs(agent_run_id, seq) WHERE agent_run_id != ''",
        'CREATE TABLE jobs(run_id TEXT COLLATE "C" NOT NULL, job_id TEXT COLLATE "C" NOT NULL,'
        " pos BIGSERIAL, spec TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY(run_id, job_id))",
        "CREATE INDEX jobs_by_job_id ON jobs(job_id)",
        'CREATE TABLE attempts(id TEXT COLLATE "C" PRIMARY KEY, pos BIGSERIAL, data TEXT NOT NULL,'
        " run_id TEXT NOT NULL DEFAULT '', job_id TEXT NOT NULL DEFAULT '')",
        "CREATE INDEX attempts_by_run ON attempts(run_id)",
        'CREATE TABLE workers(id TEXT COLLATE "C" PRIMARY KEY, pos BIGSERIAL, data TEXT NOT NULL)',
        'CREATE TABLE kv(key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL)',
        'CREATE TABLE kv_sets(key TEXT COLLATE "C" NOT NULL, member TEXT NOT NULL, PRIMARY KEY(key, member))',
        'CREATE TABLE kv_owners(key TEXT COLLATE "C" PRIMARY KEY, owner TEXT NOT NULL)',
        "CREATE INDEX kv_owners_by_owner ON kv_owners(owner)",
        "CREATE TABLE audit(seq BIGSERIAL PRIMARY KEY, at DOUBLE PRECISION NOT NULL, data TEXT NOT NULL)",
        "CREATE INDEX audit_by_time ON audit(at)",
    ),
}
#: Any number: the advisory lock masters take to migrate the schema one at a time.
_MIGRATION_LOCK = 0x7469_7461_6E00  # "titan"
_RUN_COLUMNS = "seq, state, created_at, ended_at, agent_run_id"
_NOT_KEPT = "state != 'RUNNING' AND lower(coalesce((data::jsonb)->'labels'->>'keep', '')) != 'true'"


def redact(dsn: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "postgresql://…"
    if parts.password is None:
        return dsn
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStore(Store):
    """`dsn`: a libpq connection URL (`postgresql://user@host:5432/db`); the password comes from it,
    PGPASSWORD or ~/.pgpass."""

    def __init__(self, dsn: str, connect_timeout: float = 10.0) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError(
                "the PostgreSQL store needs psycopg: pip install 'titan-runtime[postgres]'"
            ) from exc
        self._psycopg = psycopg
        self.dsn = dsn
        self.where = redact(dsn)
        self.name = f"titan-master-{os.getpid()}"  # its connections' application_name (pg_stat_activity)
        self.epoch: int | None = None  # the lease's epoch while this store's master holds it
        self.holder = ""
        self._lease_db: Any = None
        try:
            self._db = psycopg.connect(
                dsn, autocommit=True, connect_timeout=max(1, int(connect_timeout)), application_name=self.name
            )
            self._migrate()
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the PostgreSQL store at {self.where}: {_first_line(exc)}") from exc

    # ------------------------------------------------------------------ schema

    def _migrate(self) -> None:
        with self._transaction(fenced=False) as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > PG_SCHEMA_VERSION:
                raise StoreError(
                    f"the PostgreSQL store at {self.where} has schema version {version}, newer than "
                    f"this Titan's {PG_SCHEMA_VERSION}: upgrade titan-runtime on this master"
                )
            for step in range(version + 1, PG_SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]:
                    db.execute(statement)
            db.execute(
                "INSERT INTO meta VALUES('schema_version', %s)"
                " ON CONFLICT(key) DO UPDATE SET value = EXCLUDED.value",
                (str(PG_SCHEMA_VERSION),),
            )

    @property
    def schema_version(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0])

    @contextlib.contextmanager
    def _transaction(self, fenced: bool = True) -> Iterator[Any]:
        """One transaction; a full disk is a StoreFull, a lost connection a StoreError. Once this
        store holds the lease, a write transaction first checks that it still does, and keeps the
        lease row shared-locked until it commits: a master that lost the lease (or whose lease
        ran out) commits nothing more, and none takes the lease while one of its commits runs."""
        psycopg = self._psycopg
        try:
            with self._db.transaction():
                if fenced and self.epoch is not None:
                    held = self._db.execute(
                        "SELECT 1 FROM lease WHERE name = 'leader' AND epoch = %s AND holder = %s"
                        " AND expires_at > clock_timestamp() FOR SHARE",
                        (self.epoch, self.holder),
                    ).fetchone()
                    if held is None:
                        raise Fenced(
                            f"this master's lease (epoch {self.epoch}) is lost or ran out: it commits "
                            "nothing more; another master leads"
                        )
                yield self._db
        except psycopg.errors.DiskFull as exc:
            raise StoreFull(
                f"the PostgreSQL store at {self.where} is out of disk: {_first_line(exc)}"
            ) from exc
        except psycopg.OperationalError as exc:
            raise StoreError(f"the PostgreSQL store at {self.where}: {_first_line(exc)}") from exc

    # ------------------------------------------------------------------ reads

    def _rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [load_row(data) for (data,) in self._db.execute(sql, args)]

    def _jobs(self, where: str, *args: Any) -> list[dict[str, Any]]:
        return [
            {**load_row(data), "spec": load_row(spec)}
            for spec, data in self._db.execute(
                f"SELECT spec, data FROM jobs WHERE {where} ORDER BY pos", args
            )
        ]

    def load(self) -> Snapshot:
        running = "run_id IN (SELECT id FROM runs WHERE state = 'RUNNING')"
        (last_seq,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM runs").fetchone()
        return Snapshot(
            runs=self._rows("SELECT data FROM runs WHERE state = 'RUNNING' ORDER BY pos"),
            jobs=self._jobs(running),
            attempts=self._rows(f"SELECT data FROM attempts WHERE {running} ORDER BY pos"),
            workers=self._rows("SELECT data FROM workers ORDER BY pos"),
            last_seq=int(last_seq),
        )

    def read_run(self, run_id: str) -> Snapshot | None:
        runs = self._rows("SELECT data FROM runs WHERE id = %s", run_id)
        if not runs:
            return None
        return Snapshot(
            runs=runs,
            jobs=self._jobs("run_id = %s", run_id),
            attempts=self._rows("SELECT data FROM attempts WHERE run_id = %s ORDER BY pos", run_id),
        )

    def read_job(self, run_id: str, job_id: str) -> Snapshot | None:
        runs = self._rows("SELECT data FROM runs WHERE id = %s", run_id)
        jobs = self._jobs("run_id = %s AND job_id = %s", run_id, job_id) if runs else []
        if not jobs:
            return None
        attempts = self._rows(
            "SELECT data FROM attempts WHERE run_id = %s AND job_id = %s ORDER BY pos", run_id, job_id
        )
        return Snapshot(runs=runs, jobs=jobs, attempts=attempts)

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        found = self._rows("SELECT data FROM runs WHERE id = %s", run_id)
        return found[0] if found else None

    def job_runs(self, job_id: str, limit: int = 1) -> list[str]:
        rows = self._db.execute(
            "SELECT id FROM runs WHERE EXISTS (SELECT 1 FROM jobs WHERE jobs.run_id = runs.id AND jobs.job_id = %s)"
            " ORDER BY seq DESC LIMIT %s",
            (job_id, limit),
        )
        return [run_id for (run_id,) in rows]

    def list_runs(self, query: RunQuery) -> list[dict[str, Any]]:
        where, args = ["created_at >= %s"], [query.since]
        if query.before_seq:
            where.append("seq < %s")
            args.append(query.before_seq)
        if query.states:
            where.append("state = ANY(%s)")
            args.append(sorted(query.states))
        if query.agent_run_id == "*":
            where.append("agent_run_id != ''")
        elif query.agent_run_id is not None:
            where.append("agent_run_id = %s")
            args.append(query.agent_run_id)
        args.append(query.limit)
        return self._rows(
            f"SELECT data FROM runs WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT %s", *args
        )

    def collectable_runs(self, ended_before: float, keep_latest: int, limit: int) -> list[str]:
        found = [
            run_id
            for (run_id,) in self._db.execute(
                f"SELECT id FROM runs WHERE {_NOT_KEPT} AND ended_at < %s ORDER BY ended_at LIMIT %s",
                (ended_before, limit),
            )
        ]
        if keep_latest > 0 and len(found) < limit:
            beyond = self._db.execute(
                f"SELECT id FROM (SELECT id, ended_at FROM runs WHERE {_NOT_KEPT} ORDER BY ended_at DESC"
                " OFFSET %s) AS older ORDER BY ended_at LIMIT %s",
                (keep_latest, limit),
            )
            found.extend(run_id for (run_id,) in beyond if run_id not in found)
        return found[:limit]

    # ------------------------------------------------------------------ writes

    def delete_runs(self, run_ids: Sequence[str], key_prefixes: Sequence[str] = ()) -> int:
        removed = 0
        with self._transaction() as db:
            for run_id in run_ids:
                db.execute("DELETE FROM attempts WHERE run_id = %s", (run_id,))
                db.execute("DELETE FROM jobs WHERE run_id = %s", (run_id,))
                db.execute("DELETE FROM runs WHERE id = %s", (run_id,))
                owned = [
                    key for (key,) in db.execute("SELECT key FROM kv_owners WHERE owner = %s", (run_id,))
                ]
                for key in owned:
                    removed += self._delete_key(key)
            for prefix in key_prefixes:
                removed += sum(self._delete_key(key) for key in self.keys_under(prefix))
        return removed

    def _delete_key(self, key: str) -> int:
        db = self._db
        found = db.execute("DELETE FROM kv WHERE key = %s", (key,)).rowcount
        found += db.execute("DELETE FROM kv_sets WHERE key = %s", (key,)).rowcount
        db.execute("DELETE FROM kv_owners WHERE key = %s", (key,))
        return 1 if found else 0

    def write(self, changes: Changes) -> None:
        with self._transaction() as db, db.cursor() as cur:
            if changes.runs:
                cur.executemany(
                    f"INSERT INTO runs(id, data, {_RUN_COLUMNS}) VALUES(%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT(id) DO UPDATE SET data=EXCLUDED.data, seq=EXCLUDED.seq, state=EXCLUDED.state,"
                    " created_at=EXCLUDED.created_at, ended_at=EXCLUDED.ended_at, agent_run_id=EXCLUDED.agent_run_id",
                    [(r["id"], dump_row(r), *run_columns(r)) for r in changes.runs],
                )
            if changes.attempts:
                cur.executemany(
                    "INSERT INTO attempts(id, data, run_id, job_id) VALUES(%s, %s, %s, %s)"
                    " ON CONFLICT(id) DO UPDATE SET data=EXCLUDED.data",
                    [
                        (r["id"], dump_row(r), r.get("run_id", ""), r.get("job_id", ""))
                        for r in changes.attempts
                    ],
                )
            if changes.workers:
                cur.executemany(
                    "INSERT INTO workers(id, data) VALUES(%s, %s) ON CONFLICT(id) DO UPDATE SET data=EXCLUDED.data",
                    [(r["id"], dump_row(r)) for r in changes.workers],
                )
            if changes.new_jobs:
                cur.executemany(
                    "INSERT INTO jobs(run_id, job_id, spec, data) VALUES(%s, %s, %s, %s)",
                    [
                        (
                            r["run_id"],
                            r["job_id"],
                            dump_row(r["spec"]),
                            dump_row({k: v for k, v in r.items() if k != "spec"}),
                        )
                        for r in changes.new_jobs
                    ],
                )
            if changes.jobs:
                cur.executemany(
                    "UPDATE jobs SET data=%s WHERE run_id=%s AND job_id=%s",
                    [(dump_row(r), r["run_id"], r["job_id"]) for r in changes.jobs],
                )

    # ------------------------------------------------------------------ KV

    def kv_get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE key=%s", (key,)).fetchone()
        return None if row is None else row[0]

    def kv_exists(self, key: str) -> bool:
        found = self._db.execute(
            "SELECT 1 FROM kv WHERE key=%s UNION ALL SELECT 1 FROM kv_sets WHERE key=%s LIMIT 1", (key, key)
        ).fetchone()
        return found is not None

    def kv_owner(self, key: str) -> str | None:
        if not self.kv_exists(key):
            return None
        row = self._db.execute("SELECT owner FROM kv_owners WHERE key=%s", (key,)).fetchone()
        return "" if row is None else row[0]

    def kv_owned(self, owner: str) -> int:
        return int(self._db.execute("SELECT count(*) FROM kv_owners WHERE owner=%s", (owner,)).fetchone()[0])

    def _own(self, key: str, owner: str) -> None:
        if owner and not self.kv_exists(key):
            self._db.execute(
                "INSERT INTO kv_owners(key, owner) VALUES(%s, %s) ON CONFLICT(key) DO UPDATE SET owner=EXCLUDED.owner",
                (key, owner),
            )

    def _put(self, key: str, value: str, owner: str) -> None:
        self._own(key, owner)
        self._db.execute(
            "INSERT INTO kv(key, value) VALUES(%s, %s) ON CONFLICT(key) DO UPDATE SET value=EXCLUDED.value",
            (key, value),
        )

    def _locked(self, db: Any, key: str) -> None:
        """Serialise writers of one key across masters and connections (a read-then-write is one step)."""
        db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))

    def kv_put(self, key: str, value: str, owner: str = "") -> None:
        with self._transaction() as db:
            self._locked(db, key)
            self._put(key, value, owner)

    def kv_delete(self, key: str) -> bool:
        with self._transaction() as db:
            self._locked(db, key)
            return self._delete_key(key) > 0

    def kv_incr(self, key: str, delta: int, owner: str = "") -> int:
        with self._transaction() as db:
            self._locked(db, key)
            number = parse_int(key, self.kv_get(key)) + delta
            self._put(key, str(number), owner)
        return number

    def kv_cas(self, key: str, expected: str | None, value: str, owner: str = "") -> bool:
        with self._transaction() as db:
            self._locked(db, key)
            if self.kv_get(key) != expected:
                return False
            self._put(key, value, owner)
        return True

    def kv_sadd(self, key: str, member: str, owner: str = "") -> bool:
        with self._transaction() as db:
            self._locked(db, key)
            self._own(key, owner)
            added = db.execute(
                "INSERT INTO kv_sets(key, member) VALUES(%s, %s) ON CONFLICT DO NOTHING", (key, member)
            ).rowcount
        return added == 1

    def kv_srem(self, key: str, member: str) -> bool:
        with self._transaction() as db:
            self._locked(db, key)
            removed = db.execute("DELETE FROM kv_sets WHERE key=%s AND member=%s", (key, member)).rowcount
            if removed and not self.kv_exists(key):
                db.execute("DELETE FROM kv_owners WHERE key=%s", (key,))
        return removed == 1

    def kv_smembers(self, key: str) -> list[str]:
        return sorted(m for (m,) in self._db.execute("SELECT member FROM kv_sets WHERE key=%s", (key,)))

    def kv_keys(self, prefix: str, after: str, limit: int) -> list[tuple[str, str]]:
        # The columns are COLLATE "C": text compares by code point, as in SQLite.
        low = max(prefix, after)
        high = prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else None
        bound = "" if high is None else " AND key < %(high)s"
        rows = self._db.execute(
            f"SELECT key, max(kind) FROM (SELECT key, 'set' AS kind FROM kv_sets WHERE key >= %(low)s{bound} "
            f"UNION ALL SELECT key, 'value' FROM kv WHERE key >= %(low)s{bound}) AS found "
            "WHERE key > %(after)s GROUP BY key ORDER BY key LIMIT %(limit)s",
            {"low": low, "high": high, "after": after, "limit": limit},
        ).fetchall()
        return [(key, kind) for key, kind in rows]

    # ------------------------------------------------------------------ audit

    def audit_append(self, entries: Sequence[dict[str, Any]]) -> None:
        with self._transaction() as db, db.cursor() as cur:
            cur.executemany(
                "INSERT INTO audit(at, data) VALUES(%s, %s)", [(e["at"], dump_row(e)) for e in entries]
            )

    def audit_read(self, since: float = 0.0, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT data FROM audit WHERE at >= %s ORDER BY seq DESC LIMIT %s", (since, limit)
        ).fetchall()
        return [load_row(data) for (data,) in reversed(rows)]

    # ------------------------------------------------------------------ the leader's lease

    supports_lease = True

    def _lease_connection(self) -> Any:
        """A connection of its own: a renewal must not wait behind, or join, a write's transaction."""
        if self._lease_db is None:
            self._lease_db = self._psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=10, application_name=self.name
            )
        return self._lease_db

    def acquire_lease(self, holder: str, address: str, ttl: float) -> int | None:
        """Take the lease if nobody holds it or its holder's ran out (the epoch goes up by one), or
        renew it if `holder` has it; the epoch, or None while another holds it. Times are the
        database's clock, not the masters'."""
        db = self._lease_connection()
        with db.transaction():
            # The row first (epoch 0, long expired), so that FOR UPDATE has a row to lock: two
            # masters finding no row would both take the lease.
            db.execute("INSERT INTO lease VALUES('leader', 0, '', '', '-infinity') ON CONFLICT DO NOTHING")
            epoch, held_by, valid = db.execute(
                "SELECT epoch, holder, expires_at > clock_timestamp() FROM lease WHERE name = 'leader' FOR UPDATE"
            ).fetchone()
            if valid and held_by != holder:
                return None
            epoch = int(epoch) + (held_by != holder)
            db.execute(
                "UPDATE lease SET epoch = %s, holder = %s, address = %s,"
                " expires_at = clock_timestamp() + make_interval(secs => %s) WHERE name = 'leader'",
                (epoch, holder, address, ttl),
            )
        self.epoch, self.holder = epoch, holder
        return epoch

    def renew_lease(self, ttl: float) -> bool:
        """Extend the lease this store holds; False if it no longer does (taken, or ran out), or if
        the connection its commits go through is gone: a leader that cannot commit must not lead."""
        if self.epoch is None or self._db.closed:
            return False
        renewed = (
            self._lease_connection()
            .execute(
                "UPDATE lease SET expires_at = clock_timestamp() + make_interval(secs => %s)"
                " WHERE name = 'leader' AND epoch = %s AND holder = %s AND expires_at > clock_timestamp()",
                (ttl, self.epoch, self.holder),
            )
            .rowcount
        )
        return renewed == 1

    def release_lease(self) -> None:
        """Give the lease up at once (a master stopping cleanly): a standby need not wait it out."""
        if self.epoch is not None:
            self._lease_connection().execute(
                "UPDATE lease SET expires_at = clock_timestamp() WHERE name = 'leader' AND epoch = %s AND holder = %s",
                (self.epoch, self.holder),
            )
            self.epoch = None

    def lease_holder(self) -> LeaseHolder | None:
        row = (
            self._lease_connection()
            .execute(
                "SELECT epoch, holder, address, extract(epoch FROM expires_at - clock_timestamp())"
                " FROM lease WHERE name = 'leader'"
            )
            .fetchone()
        )
        if row is None:
            return None
        return LeaseHolder(epoch=int(row[0]), holder=row[1], address=row[2], expires_in=float(row[3]))

    def close(self) -> None:
        if self._lease_db is not None:
            self._lease_db.close()
        self._db.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
