"""What the master may do once a batch is written and what must wait for its fsync.

A new job's assignment goes out while the fsync of its submission runs; answers, wake-ups,
acknowledgements, cancels, and every assignment of a batch that ended an attempt wait for it.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from titan_runtime.core.cluster import ClusterConfig, ClusterState
from titan_runtime.core.effects import (
    AckFinished,
    Assign,
    AttemptExit,
    CancelAttempt,
    Changes,
    Effect,
    WorkerHello,
    before_sync,
)
from titan_runtime.core.model import JobSpec, RetryPolicy
from titan_runtime.master.link import ACK_DELAY, WorkerSession
from titan_runtime.master.loop import MasterLoop
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.store import MemoryStore, SqliteStore


def spec(job_id: str, parents: tuple[str, ...] = ()) -> JobSpec:
    return JobSpec(id=job_id, command=("true",), parents=parents)


def connected(slots: int = 2, now: float = 0.0) -> ClusterState:
    state = ClusterState(ClusterConfig(lease_timeout=1e6))
    state.worker_connected(WorkerHello(worker_id="w", name="w", slots=slots), now)
    state.take_effects()
    state.take_changes()
    return state


# ---------------------------------------------------------------- the core's split


def test_a_submissions_assignment_may_go_before_the_fsync() -> None:
    state = connected()
    state.submit_run("r", "r", [spec("a")], 1)
    early, late = before_sync(state.take_effects(), state.take_changes())
    assert [type(e) for e in early] == [Assign]
    assert late == []


def test_a_child_made_ready_by_an_end_waits_for_its_fsync() -> None:
    state = connected()
    state.submit_run("r", "r", [spec("a"), spec("b", ("a",)), spec("c", ("b",))], 1)
    (assign,) = state.take_effects()
    state.take_changes()
    assert isinstance(assign, Assign)
    state.attempt_finished("w", assign.attempt_id, AttemptExit("succeeded", 0), 2)
    effects = state.take_effects()
    early, late = before_sync(effects, state.take_changes())
    assert early == []
    assert {type(e) for e in late} == {AckFinished, Assign}  # the child waits for its parent's fsync


def test_a_job_waiting_for_the_freed_slot_goes_early() -> None:
    state = connected(slots=1)
    state.submit_run("r", "r", [spec("a"), spec("b")], 1)  # independent: b waits for a's slot
    (assign,) = state.take_effects()
    state.take_changes()
    assert isinstance(assign, Assign)
    state.attempt_finished("w", assign.attempt_id, AttemptExit("succeeded", 0), 2)
    early, late = before_sync(state.take_effects(), state.take_changes())
    assert [(type(e), getattr(e, "job_id", "")) for e in early] == [(Assign, "b")]
    assert [type(e) for e in late] == [AckFinished]


def test_a_retry_waits_for_the_fsync_of_the_failure() -> None:
    state = connected()
    state.submit_run(
        "r", "r", [JobSpec(id="a", command=("false",), retries=RetryPolicy(attempts=2, backoff_initial=0))], 1
    )
    (assign,) = state.take_effects()
    state.take_changes()
    assert isinstance(assign, Assign)
    state.attempt_finished("w", assign.attempt_id, AttemptExit("failed", 1), 2)
    early, late = before_sync(state.take_effects(), state.take_changes())
    assert early == []
    assert [e.number for e in late if isinstance(e, Assign)] == [2]


def test_cancels_wait_for_the_fsync_beside_an_early_assignment() -> None:
    state = connected(slots=2)  # b gets the second slot: a's is only freed when its attempt ends
    state.submit_run("r1", "r1", [spec("a")], 1)
    state.take_effects()
    state.take_changes()
    state.cancel("r1", 2)
    state.submit_run("r2", "r2", [spec("b")], 2)
    early, late = before_sync(state.take_effects(), state.take_changes())
    assert [(type(e), getattr(e, "job_id", "")) for e in early] == [(Assign, "b")]
    assert [type(e) for e in late] == [CancelAttempt]


# ---------------------------------------------------------------- the master loop


class WatchedStore(MemoryStore):
    """A store that notes, at each fsync, what the master had done so far."""

    syncs = True

    def __init__(self) -> None:
        super().__init__()
        self.carried: list[Effect] = []
        self.pending: list[asyncio.Future[object]] = []
        self.at_sync: list[tuple[list[type], bool]] = []

    def sync(self) -> None:  # on the loop's thread or its own: either way the loop waits for it
        self.at_sync.append(([type(e) for e in self.carried], any(f.done() for f in self.pending)))


def test_the_loop_assigns_before_the_fsync_and_answers_after_it() -> None:
    async def main() -> None:
        state = connected(now=time.time())  # the loop's clock
        store = WatchedStore()
        loop = MasterLoop(state, store)

        async def handler(effects: list[Effect], changes: Changes) -> None:
            store.carried.extend(effects)

        loop.start(handler)
        try:
            submitted = asyncio.ensure_future(
                loop.call(lambda now: state.submit_run("r", "r", [spec("a"), spec("b", ("a",))], now))
            )
            store.pending = [submitted]
            await asyncio.wait_for(submitted, 10)
            assert store.at_sync == [([Assign], False)]  # assigned before the fsync, answered after it
            (assign,) = store.carried

            # The parent's end: its child's assignment waits for the fsync, like the answer.
            store.carried.clear()
            finished = asyncio.ensure_future(
                loop.call(
                    lambda now: state.attempt_finished(
                        "w", assign.attempt_id, AttemptExit("succeeded", 0), now
                    )
                )
            )
            store.pending = [finished]
            await asyncio.wait_for(finished, 10)
            assert store.at_sync[1:] == [([], False)]
            assert {type(e) for e in store.carried} == {AckFinished, Assign}
        finally:
            await loop.stop()

    asyncio.run(main())


def test_a_change_held_for_a_lazy_commit_is_committed_when_the_loop_stops() -> None:
    async def main() -> None:
        state = connected(now=time.time())
        store = MemoryStore()
        loop = MasterLoop(state, store)

        async def handler(effects: list[Effect], changes: Changes) -> None:
            pass

        loop.start(handler)
        await loop.call(lambda now: state.submit_run("r", "r", [spec("a")], now))
        (attempt,) = store.load().attempts
        applied = asyncio.Event()

        def started(now: float) -> None:  # nothing acts on it and nobody waits: held back
            state.attempt_started("w", attempt["id"], 4242, now, now)
            applied.set()

        loop.post(started)
        await asyncio.wait_for(applied.wait(), 10)
        await loop.stop()
        (attempt,) = store.load().attempts
        assert attempt["pid"] == 4242

    asyncio.run(main())


# ---------------------------------------------------------------- SQLite: write, then fsync the WAL


@pytest.fixture
def fdatasyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files fdatasync'ed (the real call still runs)."""
    seen: list[str] = []
    real = os.fdatasync

    def recording(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", recording)
    return seen


def rows() -> Changes:
    return Changes(runs=[{"id": "r1", "name": "first"}])


def test_sqlite_write_is_visible_to_a_new_connection_before_any_sync(
    tmp_path: Path, fdatasyncs: list[str]
) -> None:
    path = tmp_path / "titan.db"
    store = SqliteStore(path)
    store.write(rows())
    assert fdatasyncs == []
    other = SqliteStore(path)  # what a restarted master would read after a crash of this process
    assert other.load().runs == [{"id": "r1", "name": "first"}]
    other.close()
    store.close()


def test_sqlite_sync_fsyncs_the_wal(tmp_path: Path, fdatasyncs: list[str]) -> None:
    store = SqliteStore(tmp_path / "titan.db")
    store.save(rows())
    assert fdatasyncs == [str(tmp_path / "titan.db-wal")]
    store.close()


def test_sqlite_kv_changes_are_synced_before_they_return(tmp_path: Path, fdatasyncs: list[str]) -> None:
    store = SqliteStore(tmp_path / "titan.db")
    calls = [
        lambda: store.kv_put("k", "v"),
        lambda: store.kv_incr("n", 1),
        lambda: store.kv_cas("c", None, "x"),
        lambda: store.kv_sadd("s", "m"),
        lambda: store.kv_srem("s", "m"),
        lambda: store.kv_delete("k"),
    ]
    for number, call in enumerate(calls, 1):
        call()
        assert len(fdatasyncs) == number
    store.kv_get("k")
    store.kv_smembers("s")
    assert len(fdatasyncs) == len(calls)  # reads sync nothing
    store.close()


def test_sqlite_without_fsync_never_syncs(tmp_path: Path, fdatasyncs: list[str]) -> None:
    store = SqliteStore(tmp_path / "titan.db", fsync=False)
    store.save(rows())
    store.kv_put("k", "v")
    assert fdatasyncs == []
    assert not store.syncs
    store.close()


# ---------------------------------------------------------------- acknowledgements ride along


def test_an_ack_travels_with_the_next_message_or_alone_after_a_delay() -> None:
    async def main() -> None:
        session = WorkerSession("w", "peer")
        session.ack(["a1"])
        session.send(pb.MasterMessage(assign=[pb.Assignment(attempt_id="a2")]))
        message = session.outbox.get_nowait()
        assert isinstance(message, pb.MasterMessage)
        assert list(message.acks) == ["a1"] and message.assign[0].attempt_id == "a2"

        session.ack(["a2"])
        assert session.outbox.empty()
        alone = await asyncio.wait_for(session.outbox.get(), ACK_DELAY + 5)
        assert isinstance(alone, pb.MasterMessage)
        assert list(alone.acks) == ["a2"] and not alone.assign
        await asyncio.sleep(ACK_DELAY * 2)
        assert session.outbox.empty()  # the timer of the first ack sent nothing twice

        session.ack(["a3"])
        session.close()
        await asyncio.sleep(ACK_DELAY * 2)
        assert session.outbox.qsize() == 1  # only the close marker

    asyncio.run(main())
