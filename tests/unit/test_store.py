"""One contract, one suite, every backend (huey's approach): the same tests run on SQLite, memory
and PostgreSQL (a server the session starts, a database per test; skipped with the reason when
this machine cannot start one)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from titan_runtime.core.cluster import ClusterState
from titan_runtime.core.effects import Changes, WorkerHello
from titan_runtime.core.model import JobSpec
from titan_runtime.store import KvTypeError, MemoryStore, SqliteStore, Store, StoreError
from titan_runtime.store.base import RunQuery


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    backend: Store
    if request.param == "sqlite":
        backend = SqliteStore(tmp_path / "titan.db")
    elif request.param == "memory":
        backend = MemoryStore()
    else:
        from titan_runtime.store.postgres import PostgresStore

        backend = PostgresStore(request.getfixturevalue("postgres").new_database())
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
    store.save(Changes(runs=[{"id": "r", "state": "RUNNING"}], new_jobs=rows))
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
    assert version == "4"


def test_a_version_3_store_gets_its_run_columns_from_the_rows(tmp_path: Path) -> None:
    """Version 4 indexes what finished runs are found by; an older store's rows fill the columns."""
    db = sqlite3.connect(tmp_path / "titan.db")
    db.executescript(
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES('schema_version', '3');"
        "CREATE TABLE runs(id TEXT PRIMARY KEY, data TEXT NOT NULL);"
        "CREATE TABLE jobs(run_id TEXT NOT NULL, job_id TEXT NOT NULL, spec TEXT NOT NULL, data TEXT NOT NULL,"
        " PRIMARY KEY(run_id, job_id));"
        "CREATE TABLE attempts(id TEXT PRIMARY KEY, data TEXT NOT NULL);"
        """INSERT INTO runs VALUES('old', '{"id":"old","state":"SUCCEEDED","seq":1,"ended_at":5.0}');"""
        """INSERT INTO runs VALUES('live', '{"id":"live","state":"RUNNING","seq":2}');"""
        """INSERT INTO jobs VALUES('old', 'j', '{"id":"j"}', '{"run_id":"old","job_id":"j","state":"SUCCEEDED"}');"""
        """INSERT INTO jobs VALUES('live', 'j', '{"id":"j"}', '{"run_id":"live","job_id":"j","state":"RUNNING"}');"""
        """INSERT INTO attempts VALUES('a1', '{"id":"a1","run_id":"old","job_id":"j"}');"""
    )
    db.commit()
    db.close()
    store = SqliteStore(tmp_path / "titan.db")
    snap = store.load()
    assert [r["id"] for r in snap.runs] == ["live"] and snap.last_seq == 2
    assert [r["run_id"] for r in snap.jobs] == ["live"] and snap.attempts == []
    old = store.read_run("old")
    assert old is not None and [a["id"] for a in old.attempts] == ["a1"]
    assert store.collectable_runs(ended_before=10.0, keep_latest=0, limit=10) == ["old"]
    assert store.job_runs("j", 2) == ["live", "old"]
    store.close()


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


def run_row(run_id: str, seq: int, state: str = "SUCCEEDED", **extra: object) -> dict:
    ended = float(seq) if state != "RUNNING" else 0.0
    return {
        "id": run_id,
        "name": run_id,
        "state": state,
        "seq": seq,
        "created_at": float(seq),
        "ended_at": ended,
        **extra,
    }


def job_row(run_id: str, job_id: str = "j") -> dict:
    return {"run_id": run_id, "job_id": job_id, "state": "SUCCEEDED", "spec": {"id": job_id}}


def test_a_restart_reads_the_running_runs_only(store: Store) -> None:
    store.save(
        Changes(
            runs=[run_row("done", 1), run_row("live", 2, "RUNNING")],
            new_jobs=[job_row("done"), job_row("live")],
            attempts=[
                {"id": "a1", "run_id": "done", "job_id": "j"},
                {"id": "a2", "run_id": "live", "job_id": "j"},
            ],
        )
    )
    snap = store.load()
    assert [r["id"] for r in snap.runs] == ["live"]
    assert [(r["run_id"], r["job_id"]) for r in snap.jobs] == [("live", "j")]
    assert [a["id"] for a in snap.attempts] == ["a2"]
    assert snap.last_seq == 2  # the finished run's seq counts: seqs are never given twice
    done = store.read_run("done")
    assert done is not None and done.runs[0]["id"] == "done"
    assert [j["spec"] for j in done.jobs] == [{"id": "j"}] and [a["id"] for a in done.attempts] == ["a1"]
    assert store.read_run("nope") is None and store.run_row("nope") is None
    assert store.run_row("done") == run_row("done", 1)


def test_runs_are_listed_latest_first_with_filters_and_pages(store: Store) -> None:
    store.save(
        Changes(
            runs=[run_row(f"r{i}", i, "FAILED" if i % 3 == 0 else "SUCCEEDED") for i in range(1, 11)]
            + [run_row("agent", 11, "RUNNING", agent_run_id="ag")],
            new_jobs=[job_row("r2", "x"), job_row("r7", "x")],
        )
    )

    def ids(**query: object) -> list[str]:
        return [r["id"] for r in store.list_runs(RunQuery(**query))]  # type: ignore[arg-type]

    assert ids(limit=3) == ["agent", "r10", "r9"]
    assert ids(limit=3, before_seq=9) == ["r8", "r7", "r6"]
    assert ids(states=frozenset({"FAILED"})) == ["r9", "r6", "r3"]
    assert ids(since=9.0) == ["agent", "r10", "r9"]
    assert ids(agent_run_id="*") == ["agent"] and ids(agent_run_id="ag") == ["agent"]
    assert ids(agent_run_id="other") == []
    assert store.job_runs("x", 5) == ["r7", "r2"] and store.job_runs("nope") == []


def test_retention_picks_old_and_surplus_finished_runs_never_kept_ones(store: Store) -> None:
    store.save(
        Changes(
            runs=[run_row(f"r{i}", i) for i in range(1, 7)]
            + [run_row("kept", 0, labels={"keep": "true"}), run_row("live", 7, "RUNNING")]
        )
    )
    assert store.collectable_runs(ended_before=3.5, keep_latest=0, limit=10) == ["r1", "r2", "r3"]
    assert store.collectable_runs(ended_before=0.0, keep_latest=2, limit=10) == ["r1", "r2", "r3", "r4"]
    assert store.collectable_runs(ended_before=2.5, keep_latest=4, limit=10) == ["r1", "r2"]
    assert store.collectable_runs(ended_before=100.0, keep_latest=0, limit=2) == ["r1", "r2"]


def test_deleting_runs_takes_their_jobs_attempts_and_keys(store: Store) -> None:
    store.save(
        Changes(
            runs=[run_row("gone", 1), run_row("stays", 2)],
            new_jobs=[job_row("gone"), job_row("stays")],
            attempts=[{"id": "a1", "run_id": "gone", "job_id": "j"}],
        )
    )
    store.kv_put("made-by-gone", "v", owner="gone")
    store.kv_sadd("set-by-gone", "m", owner="gone")
    store.kv_put("titan/artifact/gone/model", "{}")
    store.kv_put("cluster-wide", "v")
    store.kv_put("made-by-stays", "v", owner="stays")
    assert store.delete_runs(["gone"], key_prefixes=["titan/artifact/gone/"]) == 3
    assert store.read_run("gone") is None and store.job_runs("j", 5) == ["stays"]
    assert store.read_run("stays") is not None
    assert [k for k, _ in store.kv_keys("", "", 100)] == ["cluster-wide", "made-by-stays"]
    assert store.kv_owned("gone") == 0


def test_a_job_id_many_runs_hold_is_found_in_the_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("titan_runtime.store.sqlite._FEW_HOLDERS", 2)  # past it: probe the latest runs
    store = SqliteStore(tmp_path / "titan.db")
    store.save(
        Changes(
            runs=[run_row(f"r{i}", i) for i in range(1, 6)],
            new_jobs=[job_row(f"r{i}", "main") for i in (1, 2, 4, 5)],
        )
    )
    assert store.job_runs("main", 3) == ["r5", "r4", "r2"]
    assert store.job_runs("main", 1) == ["r5"]
    store.close()


def test_one_job_of_a_run_is_read_without_the_others(store: Store) -> None:
    store.save(
        Changes(
            runs=[run_row("big", 1)],
            new_jobs=[job_row("big", "a"), job_row("big", "b")],
            attempts=[
                {"id": "a1", "run_id": "big", "job_id": "a"},
                {"id": "b1", "run_id": "big", "job_id": "b"},
                {"id": "a2", "run_id": "big", "job_id": "a"},
            ],
        )
    )
    one = store.read_job("big", "a")
    assert one is not None and [r["id"] for r in one.runs] == ["big"]
    assert [(j["job_id"], j["spec"]) for j in one.jobs] == [("a", {"id": "a"})]
    assert [a["id"] for a in one.attempts] == ["a1", "a2"]
    assert store.read_job("big", "c") is None and store.read_job("nope", "a") is None


def test_history_answers_for_one_job_of_a_big_finished_run_without_reading_the_run() -> None:
    from titan_runtime.master.history import History

    class Counting(MemoryStore):
        whole_runs = 0

        def read_run(self, run_id: str):  # type: ignore[no-untyped-def]
            found = super().read_run(run_id)
            Counting.whole_runs += found is not None
            return found

    store = Counting()
    store.save(Changes(runs=[run_row("big", 1)], new_jobs=[job_row("big", f"j{i}") for i in range(50)]))
    history = History(ClusterState(), store, cached_jobs=10)  # the run is bigger than the cache
    assert history.resolve("big/j7").spec.id == "j7"
    assert history.resolve("j9").run_id == "big"  # a bare id: its latest run
    assert Counting.whole_runs == 0
    assert len(history.run("big").jobs) == 50 and Counting.whole_runs == 1  # asked for whole: read whole
