"""One contract, one suite, every backend (huey's approach): the same tests run on SQLite and memory."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from titan_runtime.core.cluster import ClusterState
from titan_runtime.core.effects import Changes, WorkerHello
from titan_runtime.core.model import JobSpec
from titan_runtime.store import KvTypeError, MemoryStore, SqliteStore, Store, StoreError


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    backend: Store = SqliteStore(tmp_path / "titan.db") if request.param == "sqlite" else MemoryStore()
    yield backend
    backend.close()


def sample_changes() -> Changes:
    state = ClusterState()
    state.worker_connected(WorkerHello(worker_id="w", name="wörker", slots=2, tags=frozenset({"GPU"})), 0)
    state.submit_run(
        "r",
        "run ✓",
        [JobSpec(id="a", command=("echo", "é")), JobSpec(id="b", command=("true",), parents=("a",))],
        1,
        {"k": "v"},
    )
    return state.take_changes()


def test_save_and_load_round_trip(store: Store) -> None:
    changes = sample_changes()
    store.save(changes)
    snap = store.load()
    assert snap.runs == changes.runs
    assert sorted(snap.jobs, key=lambda r: r["job_id"]) == sorted(changes.new_jobs, key=lambda r: r["job_id"])
    assert snap.jobs[0]["spec"]["command"] == ["echo", "é"]
    assert snap.attempts == changes.attempts
    assert snap.workers == changes.workers


def test_jobs_are_written_once_then_updated_in_insertion_order(store: Store) -> None:
    rows = [{"run_id": "r", "job_id": f"j{i}", "state": "PENDING", "spec": {"id": f"j{i}"}} for i in range(5)]
    store.save(Changes(new_jobs=rows))
    store.save(Changes(jobs=[{"run_id": "r", "job_id": "j2", "state": "SUCCEEDED"}]))
    snap = store.load()
    assert [r["job_id"] for r in snap.jobs] == ["j0", "j1", "j2", "j3", "j4"]
    assert snap.jobs[2] == {"run_id": "r", "job_id": "j2", "state": "SUCCEEDED", "spec": {"id": "j2"}}


def test_kv_values(store: Store) -> None:
    assert store.kv_get("k") is None
    store.kv_put("k", "värde, 値")
    assert store.kv_get("k") == "värde, 値"
    store.kv_put("k", "new")
    assert store.kv_get("k") == "new"
    assert store.kv_delete("k") is True
    assert store.kv_delete("k") is False
    assert store.kv_get("k") is None


def test_kv_incr_is_integer_arithmetic(store: Store) -> None:
    assert store.kv_incr("n", 1) == 1
    assert store.kv_incr("n", 10) == 11
    assert store.kv_incr("n", -12) == -1
    store.kv_put("text", "abc")
    with pytest.raises(KvTypeError, match="not an integer"):
        store.kv_incr("text", 1)
    assert store.kv_get("text") == "abc"


def test_kv_compare_and_set(store: Store) -> None:
    assert store.kv_cas("c", None, "first") is True
    assert store.kv_cas("c", None, "again") is False
    assert store.kv_cas("c", "wrong", "x") is False
    assert store.kv_cas("c", "first", "second") is True
    assert store.kv_get("c") == "second"


def test_kv_sets(store: Store) -> None:
    assert store.kv_sadd("s", "a,b") is True
    assert store.kv_sadd("s", "a,b") is False
    assert store.kv_sadd("s", "ü") is True
    assert store.kv_smembers("s") == ["a,b", "ü"]
    assert store.kv_srem("s", "missing") is False
    assert store.kv_srem("s", "a,b") is True
    assert store.kv_smembers("s") == ["ü"]
    assert store.kv_smembers("none") == []
    assert store.kv_delete("s") is True
    assert store.kv_smembers("s") == []


def test_kv_keys_are_listed_in_pages_by_prefix(store: Store) -> None:
    for key in ("b/2", "a", "b/1", "b", "b/é", "c"):
        store.kv_put(key, "v")
    store.kv_sadd("b/set", "m1")
    store.kv_sadd("b/set", "m2")  # one key, however many members
    store.kv_sadd("b/1", "m")  # a value and a set of one name: listed once, as a value
    assert store.kv_keys("b/", "", 100) == [
        ("b/1", "value"),
        ("b/2", "value"),
        ("b/set", "set"),
        ("b/é", "value"),
    ]
    assert store.kv_keys("b/", "", 2) == [("b/1", "value"), ("b/2", "value")]
    assert store.kv_keys("b/", "b/2", 2) == [("b/set", "set"), ("b/é", "value")]
    assert store.kv_keys("b/", "b/é", 2) == []
    assert [k for k, _ in store.kv_keys("", "", 100)] == ["a", "b", "b/1", "b/2", "b/set", "b/é", "c"]
    assert store.kv_keys("zz", "", 100) == []


def test_sqlite_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "titan.db"
    first = SqliteStore(path)
    first.save(sample_changes())
    first.kv_sadd("set", "member")
    first.close()
    second = SqliteStore(path)
    assert second.load().runs[0]["name"] == "run ✓"
    assert second.kv_smembers("set") == ["member"]
    second.close()


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "titan.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this Titan"):
        SqliteStore(path)


def test_sqlite_save_is_atomic(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "titan.db")
    bad = Changes(runs=[{"id": "r1"}], new_jobs=[{"run_id": "r", "job_id": "x", "spec": {}, "bad": object()}])
    with pytest.raises(TypeError):
        store.save(bad)
    assert store.load().runs == []
    store.close()


def test_kv_keys_remember_the_run_that_created_them(store: Store) -> None:
    store.kv_put("a", "1", owner="r1")
    store.kv_put("a", "2", owner="r2")  # an update: still r1's
    store.kv_incr("n", 1, owner="r1")
    store.kv_cas("c", None, "x", owner="r2")
    store.kv_sadd("s", "m", owner="r1")
    store.kv_sadd("s", "n", owner="r2")
    store.kv_put("cluster", "v")
    assert (store.kv_owned("r1"), store.kv_owned("r2"), store.kv_owned("")) == (3, 1, 0)
    assert store.kv_exists("s") and store.kv_exists("a") and not store.kv_exists("nope")
    owners = {k: store.kv_owner(k) for k in ("a", "n", "c", "s", "cluster", "nope")}
    assert owners == {"a": "r1", "n": "r1", "c": "r2", "s": "r1", "cluster": "", "nope": None}
    store.kv_delete("a")
    store.kv_srem("s", "m")
    assert store.kv_owned("r1") == 2
    store.kv_srem("s", "n")
    assert store.kv_owned("r1") == 1 and not store.kv_exists("s")


def test_a_full_disk_fails_the_write_cleanly_and_the_store_goes_on(tmp_path: Path) -> None:
    from titan_runtime.store import StoreFull

    store = SqliteStore(tmp_path / "titan.db")
    store.save(sample_changes())
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")
    big = [
        {"run_id": "r", "job_id": f"x{i}", "state": "PENDING", "spec": {"id": "x" * 2000}} for i in range(50)
    ]
    with pytest.raises(StoreFull, match="is full"):
        store.write(Changes(new_jobs=big))
    with pytest.raises(StoreFull):
        store.kv_put("k", "v" * 100_000)
    assert not store._db.in_transaction
    store._db.execute(f"PRAGMA max_page_count={pages * 100}")
    store.write(Changes(new_jobs=big))  # the connection is usable again once there is room
    assert len(store.load().jobs) == 52
    store.close()


def test_a_version_1_store_is_migrated(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "titan.db")
    db.executescript(
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES('schema_version', '1');"
        "CREATE TABLE kv(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO kv VALUES('old', 'v');"
    )
    db.commit()
    db.close()
    store = SqliteStore(tmp_path / "titan.db")
    assert store.kv_get("old") == "v" and store.kv_owned("") == 0
    store.close()
    version = sqlite3.connect(tmp_path / "titan.db").execute("SELECT value FROM meta").fetchone()[0]
    assert version == "3"


def test_a_database_left_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "titan.db"
    SqliteStore(path).close()
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if name.exists():
            name.chmod(0o644)
    store = SqliteStore(path)
    try:
        modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
        assert modes and set(modes.values()) == {0o600}, modes
    finally:
        store.close()


def test_the_audit_log_keeps_entries_in_order_and_reads_the_latest(store: Store) -> None:
    store.audit_append([{"at": float(t), "rpc": f"R{t}", "who": "cluster token"} for t in range(5)])
    store.audit_append([{"at": 5.0, "rpc": "R5", "who": "job of run r"}])
    assert [e["rpc"] for e in store.audit_read()] == ["R0", "R1", "R2", "R3", "R4", "R5"]
    assert [e["rpc"] for e in store.audit_read(since=3.0)] == ["R3", "R4", "R5"]
    assert [e["rpc"] for e in store.audit_read(limit=2)] == ["R4", "R5"]
    assert store.audit_read(since=9.0) == []
