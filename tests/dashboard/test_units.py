"""The dashboard's parts without a cluster: event encoding, the hub's fan-out and catch-up, the
cluster feed's bookkeeping, sessions, the sign-in throttle, redirects, and the bind check."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed: pip install -e '.[dashboard]'")

from titan_runtime.client.records import JobRecord, RunRecord, WatchEvent, WorkerRecord
from titan_runtime.client.tokens import IdentityRecord
from titan_runtime.dashboard import auth, feeds, live
from titan_runtime.dashboard.render import Renderer
from titan_runtime.dashboard.server import DashboardError, check_bind
from titan_runtime.proto import titan_pb2 as pb


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeClient:
    async def close(self) -> None:
        pass


def test_an_event_is_encoded_once_per_variant_with_every_line_prefixed() -> None:
    rendered: list[bool] = []

    def render(writer: bool) -> str:
        rendered.append(writer)
        return "<tr>\r\n<td>a</td>\n</tr>" + ("<button>" if writer else "")

    message = live.Message("rows", render, id="7")
    assert message.encode(False) == b"event: rows\nid: 7\ndata: <tr>\ndata: <td>a</td>\ndata: </tr>\n\n"
    assert message.encode(True).endswith(b"data: </tr><button>\n\n")
    message.encode(True)
    message.encode(False)
    assert rendered == [False, True]
    assert live.Message.json("x", {"a": [1, 2]}).encode(False) == b'event: x\ndata: {"a":[1,2]}\n\n'


class Counter(live.Topic):
    kind = "counter"

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.value = 0

    def snapshot(self) -> list[live.Message]:
        return [live.Message("value", str(self.value))]

    async def run(self) -> None:
        await asyncio.Event().wait()  # publishes only when the test says


def test_a_topic_is_shared_and_a_slow_browser_gets_the_state_again() -> None:
    async def main() -> None:
        hub = live.Hub(limits={"counter": 1}, linger=0.0)
        fast, slow = live.Subscription(True), live.Subscription(False, limit=4)
        made: list[Counter] = []

        def make() -> Counter:
            made.append(Counter("c"))
            return made[-1]

        topic = hub.join(fast, "c", make)
        assert hub.join(slow, "c", make) is topic and len(made) == 1
        with pytest.raises(live.Busy):
            hub.join(live.Subscription(True), "other", lambda: Counter("other"))
        for n in range(1, 10):
            topic.value = n  # type: ignore[attr-defined]
            topic.publish(live.Message("value", str(n)))
        got = [fast.queue.get_nowait() for _ in range(fast.queue.qsize())]
        assert [m.data for m in got] == [str(n) for n in range(10)]  # the snapshot, then every change
        behind = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
        assert slow.resent >= 1 and behind[-1].data == "9"  # caught up: the state, not the backlog
        hub.leave(fast)
        hub.leave(slow)
        await asyncio.sleep(0.05)  # the linger (0 s) runs on the loop
        assert hub.topics == {} and topic.task is not None
        await asyncio.gather(topic.task, return_exceptions=True)
        assert topic.task.cancelled()

    asyncio.run(main())


def test_a_subscription_gets_only_the_events_it_asked_for_and_ends() -> None:
    sub = live.Subscription(False, events=("a",))
    sub.deliver([live.Message("a", "1"), live.Message("b", "2")])
    assert sub.queue.qsize() == 1
    sub.end()
    assert sub.queue.get_nowait().data == "1" and sub.queue.get_nowait() is None  # type: ignore[union-attr]


def _worker(name: str, cpu: float) -> WorkerRecord:
    return WorkerRecord(id=f"{name}-1", name=name, host="h", pid=1, tags=[], slots=2, running=1,
                        cpu_percent=cpu, memory_percent=10.0, last_heartbeat=0.0, state="ALIVE", cpu_count=4,
                        memory_bytes=1 << 30, gpus=[], version="1", registered_at=0.0)  # fmt: skip


def _run(run_id: str, state: str, created: float, **counts: int) -> RunRecord:
    return RunRecord(id=run_id, name="n", state=state, reason="", labels={}, agent_run_id="",
                     created_at=created, ended_at=0.0, counts=counts)  # fmt: skip


def test_the_cluster_feed_counts_jobs_per_second_and_keeps_recent_runs_and_load() -> None:
    feed = feeds.ClusterFeed(FakeClient(), Renderer(), recent_runs=2)  # type: ignore[arg-type]
    snapshot = WatchEvent(snapshot=True, at=100.0, runs=[_run("r1", "RUNNING", 1, RUNNING=2, SUCCEEDED=3)],
                          jobs=[], workers=[_worker("w1", 5.0)])  # fmt: skip
    feed.apply(snapshot)
    assert feed.jobs_per_second() == 0.0  # what had ended before is not a rate
    feed.apply(WatchEvent(False, 110.0, [_run("r1", "RUNNING", 1, RUNNING=1, SUCCEEDED=4, FAILED=1)], [], []))
    feed.apply(WatchEvent(False, 120.0, [_run("r1", "SUCCEEDED", 1, SUCCEEDED=6)], [], [_worker("w1", 50.0)]))
    assert feed.jobs_per_second() == pytest.approx(3 / 20)
    assert list(feed.load["w1-1"]) == [(100.0, 5.0, 10.0), (120.0, 50.0, 10.0)]
    summary = feed.summary()
    assert summary["workers"] == 1 and summary["slots"] == 2 and summary["runs_running"] == 0
    for n, created in ((2, 2.0), (3, 3.0), (4, 4.0)):
        feed.apply(WatchEvent(False, 130.0, [_run(f"r{n}", "FAILED", created)], [], []))
    assert [r.id for r in feed.recent()] == ["r4", "r3"]  # finished runs beyond recent_runs go
    feed.apply(WatchEvent(False, 200.0, [], [], [_worker("w2", 1.0)], queues={"gpu": 3, "": 1}))
    assert list(feed.load) == ["w2-1"]  # a worker that went takes its load history with it
    assert feed.summary()["queues"] == [("gpu", 3), ("", 1)]
    assert feed.jobs_per_second() == 0.0  # nothing ended in the last 30 s


class WatchedClient(FakeClient):
    """A client whose one watch yields what the test puts in `events`."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[WatchEvent] = asyncio.Queue()

    async def watch(self, **_: Any) -> Any:
        while True:
            yield await self.events.get()


def _job(job_id: str, state: str) -> JobRecord:
    return JobRecord.from_pb(pb.JobInfo(id=job_id, run_id="r1", state=state))


def test_a_run_page_waits_for_the_shared_watch_to_see_what_the_users_read_saw() -> None:
    async def main() -> None:
        client = WatchedClient()
        feed = feeds.RunFeed(client, "r1")  # type: ignore[arg-type]
        feed.start()
        client.events.put_nowait(
            WatchEvent(True, 1.0, [_run("r1", "RUNNING", 1, RUNNING=1)], [_job("a", "RUNNING")], [])
        )
        assert await feed.whole(5.0) is not None
        cancelled = _run("r1", "CANCELLED", 1, CANCELLED=1)  # read after the user's cancel
        drawing = asyncio.create_task(feed.whole(5.0, cancelled))
        await asyncio.sleep(0.05)
        assert not drawing.done()  # the watch is behind the user's own read: not drawn from it yet
        client.events.put_nowait(WatchEvent(False, 2.0, [cancelled], [_job("a", "CANCELLED")], []))
        run, jobs = await asyncio.wait_for(drawing, 5.0)  # type: ignore[misc]
        assert run.state == "CANCELLED" and [j.state for j in jobs] == ["CANCELLED"]
        assert feed.ended  # the run is over: the watch is done
        resumed = _run("r1", "RUNNING", 1, RUNNING=1)
        assert await feed.whole(5.0, resumed) is None  # an ended watch cannot catch up: read it
        assert await feed.whole(0.05, _run("r1", "RUNNING", 1, SUCCEEDED=2)) is None
        await feed.stop()

    asyncio.run(main())


def test_sessions_expire_and_cookies_must_be_signed() -> None:
    clock = Clock()
    store = auth.SessionStore(b"k" * 32, idle=60, max_age=3600, clock=clock)
    identity = IdentityRecord(kind="read", name="viewer")
    session = store.add("tok", identity, FakeClient())  # type: ignore[arg-type]
    cookie = store.cookie_value(session)
    assert "tok" not in cookie and store.find(cookie) is session
    assert store.find(cookie[:-2] + "xx") is None
    assert auth.SessionStore(b"o" * 32, 60, 3600, clock).find(cookie) is None  # another key
    assert not session.can_write and session.who == "read token viewer"
    clock.now += 61
    assert store.find(cookie) is None and len(store) == 0  # idle too long: gone


def test_the_oldest_session_goes_past_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "MAX_SESSIONS", 2)
    store = auth.SessionStore(b"k" * 32, idle=60, max_age=3600, clock=Clock())
    first, _, third = (store.add(str(n), IdentityRecord("admin", "a"), FakeClient()) for n in range(3))  # type: ignore[arg-type]
    assert store.find(store.cookie_value(first)) is None
    assert store.find(store.cookie_value(third)) is third and len(store) == 2


def test_the_signin_throttle_waits_longer_after_each_wrong_token() -> None:
    clock = Clock()
    throttle = auth.SigninThrottle(free=2, cap=4.0, clock=clock)
    waits: list[float] = []
    for _ in range(6):
        throttle.failed("1.2.3.4")
        waits.append(throttle.retry_in("1.2.3.4"))
    assert waits == [0.0, 0.0, 1.0, 2.0, 4.0, 4.0]
    assert throttle.retry_in("5.6.7.8") == 0.0
    throttle.succeeded("1.2.3.4")
    assert throttle.retry_in("1.2.3.4") == 0.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/runs?x=1", "/runs?x=1"),
        ("", "/"),
        (None, "/"),
        ("//evil", "/"),
        ("https://evil", "/"),
        ("/\\evil", "/"),
    ],
)
def test_sign_in_goes_back_to_this_site_only(value: Any, expected: str) -> None:
    assert auth.safe_next(value) == expected


def test_off_loopback_it_serves_https_or_is_told_insecure() -> None:
    for host in ("127.0.0.1", "::1", "[::1]", "localhost"):
        check_bind(host, https=False, insecure=False)
    with pytest.raises(DashboardError, match="without TLS"):
        check_bind("0.0.0.0", https=False, insecure=False)
    check_bind("0.0.0.0", https=True, insecure=False)
    check_bind("10.0.0.1", https=False, insecure=True)
