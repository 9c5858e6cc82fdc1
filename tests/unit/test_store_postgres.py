"""The PostgreSQL store beyond the shared suite (tests/unit/test_store.py runs that on it too): its
schema versions, two masters opening one database at once, reopening, and what errors say."""

from __future__ import annotations

import threading

import pytest

from tests.helpers import wait_until
from tests.hosts import PostgresServer
from tests.unit.test_store import sample_changes
from titan_runtime.store import StoreError
from titan_runtime.store.base import Fenced
from titan_runtime.store.postgres import PG_SCHEMA_VERSION, PostgresStore, redact


def test_it_survives_reopening_and_keeps_its_schema_version(postgres: PostgresServer) -> None:
    url = postgres.new_database()
    first = PostgresStore(url)
    assert first.schema_version == PG_SCHEMA_VERSION
    first.save(sample_changes())
    first.kv_sadd("set", "member")
    first.close()
    second = PostgresStore(url)
    assert second.load().runs[0]["name"] == "run ✓"
    assert second.kv_smembers("set") == ["member"]
    second.close()


def test_a_newer_schema_is_refused(postgres: PostgresServer) -> None:
    import psycopg

    url = postgres.new_database()
    PostgresStore(url).close()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 999, newer than this Titan's"):
        PostgresStore(url)


def test_masters_opening_a_new_database_at_once_make_its_schema_once(postgres: PostgresServer) -> None:
    url = postgres.new_database()
    opened: list[PostgresStore] = []
    failed: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        try:
            opened.append(PostgresStore(url))
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failed and len(opened) == 4
    opened[0].kv_put("k", "v")
    assert all(store.kv_get("k") == "v" for store in opened)  # one database, one schema
    for store in opened:
        store.close()


def test_kv_writes_from_two_masters_do_not_lose_updates(postgres: PostgresServer) -> None:
    url = postgres.new_database()
    one, two = PostgresStore(url), PostgresStore(url)

    def count(store: PostgresStore) -> None:
        for _ in range(50):
            store.kv_incr("n", 1)

    threads = [threading.Thread(target=count, args=(s,)) for s in (one, two)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert one.kv_get("n") == "100"
    one.close()
    two.close()


def test_errors_never_show_the_password(postgres: PostgresServer) -> None:
    assert (
        redact("postgresql://titan:s3cret@db.example:5432/titan")
        == "postgresql://titan:***@db.example:5432/titan"
    )
    assert redact("postgresql://titan@db/titan") == "postgresql://titan@db/titan"
    with pytest.raises(StoreError) as caught:
        PostgresStore(
            f"postgresql://titan:s3cret@127.0.0.1:{postgres.port}/no_such_database", connect_timeout=5
        )
    assert "s3cret" not in str(caught.value) and "no_such_database" in str(caught.value)


def test_one_store_holds_the_lease_and_a_deposed_ones_commits_are_refused(postgres: PostgresServer) -> None:
    url = postgres.new_database()
    a, b = PostgresStore(url), PostgresStore(url)
    assert a.acquire_lease("a", "127.0.0.1:1", ttl=0.5) == 1
    assert b.acquire_lease("b", "127.0.0.1:2", ttl=0.5) is None  # held
    holder = b.lease_holder()
    assert holder is not None and (holder.holder, holder.address, holder.epoch) == ("a", "127.0.0.1:1", 1)
    a.save(sample_changes())  # the holder commits
    epoch = wait_until(lambda: b.acquire_lease("b", "127.0.0.1:2", ttl=30), 10, what="a's lease to run out")
    assert epoch == 2
    with pytest.raises(Fenced, match="epoch 1"):
        a.kv_put("k", "from a")  # deposed: nothing it writes lands
    with pytest.raises(Fenced):
        a.save(sample_changes())
    assert not a.renew_lease(0.5) and a.kv_get("k") is None
    assert b.renew_lease(30)
    b.kv_put("k", "from b")
    assert b.acquire_lease("b", "127.0.0.1:2", ttl=30) == 2  # its own: renewed, same epoch
    b.release_lease()  # a clean stop: the next need not wait
    assert a.acquire_lease("a", "127.0.0.1:1", ttl=30) == 3
    a.close()
    b.close()


def test_masters_asking_for_the_lease_at_once_elect_one(postgres: PostgresServer) -> None:
    url = postgres.new_database()
    stores = [PostgresStore(url) for _ in range(4)]
    got: dict[int, int | None] = {}
    start = threading.Barrier(len(stores))

    def ask(i: int) -> None:
        start.wait()
        got[i] = stores[i].acquire_lease(f"m{i}", "", ttl=30)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(got.values(), key=lambda e: e or 0) == [None, None, None, 1]
    for store in stores:
        store.close()
