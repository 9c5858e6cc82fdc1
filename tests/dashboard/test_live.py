"""The live streams (server-sent events) against a live cluster: a snapshot first, then what
changes; one master stream per thing watched whatever the number of browsers; log tails that keep
the last lines only; writers' and readers' variants; streams that end with their session."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import Browser, Served
from tests.dashboard.test_pages import found_ids, page_data
from tests.helpers import ProcessCluster, start_leader_and_standby, wait_until
from titan_runtime import TitanClient, TitanJob
from titan_runtime.client.aio import AsyncTitanClient
from titan_runtime.dashboard import auth, state
from titan_runtime.dashboard.feeds import KEEP_LINES
from titan_runtime.dashboard.server import start_in_thread
from titan_runtime.dashboard.settings import DashboardSettings

pytestmark = pytest.mark.integration

Events = list[tuple[str, str]]


def waits_for(path: Path, name: str = "waiter", before: str = "before", after: str = "after") -> TitanJob:
    """A job that prints `before`, waits until the test creates `path`, then prints `after`."""
    script = (
        f"import os, time\nprint({before!r}, flush=True)\n"
        f"while not os.path.exists({str(path)!r}): time.sleep(0.02)\nprint({after!r})"
    )
    return TitanJob(name, command=["python3", "-c", script])


def decoded(events: Events, name: str) -> list[Any]:
    return [json.loads(data) for event, data in events if event == name]


def lines_held(events: Events) -> list[str]:
    """The log lines a browser holds after these events (a reset starts again)."""
    held: list[str] = []
    for message in decoded(events, "lines"):
        if message["reset"]:
            held = []
        held.extend(line[3] for line in message["lines"])
    return held


def topics(served: Served, prefix: str) -> dict[str, int]:
    """The hub's open topics starting with `prefix`, and how many browsers each serves."""

    def read() -> dict[str, int] | None:
        try:
            return {
                k: len(t.subscribers)
                for k, t in list(served.app_state.hub.topics.items())
                if k.startswith(prefix)
            }
        except RuntimeError:  # changed while read, from the dashboard's thread: read again
            return None

    return wait_until(lambda: read() is not None and read(), 5, what="the hub's topics")  # type: ignore[no-any-return]


def signed_in(served: Served) -> Browser:
    return served.browser(served.cluster.token)


def test_the_overview_stream_sends_a_snapshot_then_what_changes(served: Served) -> None:
    client = served.cluster.client
    browser = signed_in(served)
    started: dict[str, str] = {}

    def until(events: Events) -> bool:
        names = {name for name, _ in events}
        if "loadhistory" in names and not started:
            started["run"] = client.submit_dag("live", [TitanJob("a", command=["true"])])
        return bool(started) and any(
            r["id"] == started["run"] and r["state"] == "SUCCEEDED"
            for batch in decoded(events, "runs")
            for r in batch
        )

    events = browser.events("/live/overview", until)
    names = [name for name, _ in events]
    assert {"status", "summary", "recent", "workers", "load", "loadhistory", "runs"} <= set(names)
    workers = next(data for name, data in events if name == "workers")
    assert 'data-worker="w1"' in workers
    assert started["run"] in next(data for name, data in reversed(events) if name == "recent")


def test_a_run_stream_changes_its_jobs_states_live(served: Served, tmp_path: Path) -> None:
    client = served.cluster.client
    gate = tmp_path / "go"
    run = client.submit_dag("live-run", [waits_for(gate)])
    wait_until(lambda: client.get_job(f"{run}/waiter").state == "RUNNING", 30, what="the job to run")
    browser = signed_in(served)

    def until(events: Events) -> bool:
        runs = decoded(events, "run")
        if runs and not gate.exists():
            first = runs[0]
            assert first["reset"] and [j["state"] for j in first["jobs"]] == ["RUNNING"]
            assert topics(served, "run:") == {f"run:{run}": 1}
            gate.touch()
        return any(m["run"] and m["run"]["state"] == "SUCCEEDED" for m in runs)

    events = browser.events(f"/live/runs/{run}", until)
    states = [j["state"] for m in decoded(events, "run") for j in m["jobs"]]
    assert states[0] == "RUNNING" and states[-1] == "SUCCEEDED"
    # Each job carries its attempts as the job page's table shows them, its log's size included.
    first = decoded(events, "run")[0]["jobs"][0]["attempts"]
    assert [(a["n"], a["state"], a["exit"], a["ended"]) for a in first] == [(1, "RUNNING", None, 0.0)]
    last = [j for m in decoded(events, "run") for j in m["jobs"]][-1]["attempts"]
    record = client.get_job(f"{run}/waiter").attempts[0]
    assert [(a["n"], a["state"], a["exit"], a["log"], a["ended"]) for a in last] == [
        (1, "SUCCEEDED", 0, record.log_size, record.ended_at)
    ]
    assert record.log_size > 0


def test_a_run_page_is_drawn_from_the_runs_one_shared_watch(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty browsers loading a running run's page must not make the master read the run twenty
    times: each page load checks with the user's token that the run may be read (a header read),
    and the page is drawn from the dashboard's one watch of the run, which the page's stream then
    joins. Without room for another watch, the page reads the run itself."""
    client = served.cluster.client
    gate = tmp_path / "go"
    first, waiter, last = (
        TitanJob("first", command=["true"]),
        waits_for(gate),
        TitanJob("last", command=["true"]),
    )
    first >> waiter >> last
    run = client.submit_dag("drawn", [first, waiter, last])
    wait_until(lambda: client.get_job(f"{run}/waiter").state == "RUNNING", 30, what="the job to run")
    reads: list[Any] = []
    read_run = inspect.getattr_static(AsyncTitanClient, "get_run")  # the operation, as the class has it

    def counted(self: AsyncTitanClient, run_id: str, *, jobs: Any = None, limit: int = 0) -> Any:
        reads.append(jobs)  # None: the run with all its jobs
        return read_run.__get__(self, AsyncTitanClient)(run_id, jobs=jobs, limit=limit)

    monkeypatch.setattr(AsyncTitanClient, "get_run", counted)
    browsers = [signed_in(served) for _ in range(5)]
    for browser in browsers:
        page = browser.get(f"/runs/{run}")
        assert page.status_code == 200
        jobs = {j["id"]: j["state"] for j in page_data(page.text, "run-data")["jobs"]}
        assert jobs == {"first": "SUCCEEDED", "waiter": "RUNNING", "last": "PENDING"}
        assert found_ids(page.text, "run-node", "data-job") == ["first", "waiter", "last"]
    assert reads == [[]] * len(browsers)  # the header read, with each user's token, only
    assert topics(served, "run:") == {f"run:{run}": 0}  # the one watch, held for the streams
    held = served.app_state.hub.topics[f"run:{run}"]
    streamed = browsers[0].events(f"/live/runs/{run}", lambda events: bool(decoded(events, "run")))
    assert decoded(streamed, "run")[0]["reset"] and served.app_state.hub.topics[f"run:{run}"] is held

    served.app_state.hub.limits["run"] = 0  # no room for a watch: the page reads the run itself
    served.app_state.hub.topics.pop(f"run:{run}")
    reads.clear()
    page = browsers[1].get(f"/runs/{run}")
    assert page.status_code == 200 and reads == [[], None]
    assert found_ids(page.text, "run-node", "data-job") == ["first", "waiter", "last"]
    gate.touch()


def test_a_log_is_followed_live_once_for_every_browser(served: Served, tmp_path: Path) -> None:
    client = served.cluster.client
    gate = tmp_path / "go"
    run = client.submit_dag("talk", [waits_for(gate, "talker", "first line", "second line")])
    first, second = signed_in(served), signed_in(served)
    path = f"/live/jobs/{run}/talker"

    def second_browser(events: Events) -> bool:
        # Both browsers watch: one log follower and one run watch serve them.
        if "first line" not in lines_held(events):
            return False
        assert topics(served, f"log:{run}/") == {f"log:{run}/talker": 2}
        assert topics(served, f"run:{run}") == {f"run:{run}": 2}
        return True

    def first_browser(events: Events) -> bool:
        held = lines_held(events)
        if held == ["first line"] and not gate.exists():
            second.events(path, second_browser)  # a late browser starts with the lines so far
            gate.touch()
        return any(name == "eof" for name, _ in events)

    events = first.events(path, first_browser)
    assert lines_held(events) == ["first line", "second line"]
    assert decoded(events, "eof") == [{"error": ""}]


def test_a_late_browser_gets_the_last_lines_only(served: Served) -> None:
    client = served.cluster.client
    run = client.submit_dag(
        "chatty", [TitanJob("chatty", command=["python3", "-c", "for i in range(3000): print('line', i)"])]
    )
    client.wait_run(run, 60)
    path = f"/live/jobs/{run}/chatty"
    late: dict[str, Events] = {}

    def until(events: Events) -> bool:
        if any(name == "eof" for name, _ in events):
            late["events"] = signed_in(served).events(path, lambda e: any(name == "eof" for name, _ in e))
            return True
        return False

    assert lines_held(signed_in(served).events(path, until))[-1] == "line 2999"
    first = decoded(late["events"], "lines")[0]
    assert first["reset"] and len(first["lines"]) == KEEP_LINES
    assert [line[3] for line in first["lines"]][::999] == ["line 2000", "line 2999"]


def test_a_big_log_is_tailed_from_near_its_end(served: Served) -> None:
    client = served.cluster.client
    script = "for i in range(20000): print('a fairly long line of output, number', i)"
    run = client.submit_dag("big", [TitanJob("big", command=["python3", "-c", script])])
    client.wait_run(run, 60)
    events = signed_in(served).events(f"/live/jobs/{run}/big", lambda e: any(name == "eof" for name, _ in e))
    held = lines_held(events)
    assert any(m["reset"] and m["cut"] for m in decoded(events, "lines"))
    assert held[-1] == "a fairly long line of output, number 19999"
    assert 1000 < len(held) < 10000  # the last 256 KiB, not the whole log


def test_a_running_jobs_big_log_is_tailed_from_near_its_end(served: Served, tmp_path: Path) -> None:
    """A browser that opens a running job with a long log already written starts near its end: the
    master says how much the running attempt has logged so far."""
    client = served.cluster.client
    gate = tmp_path / "go"
    script = (
        f"import os, time\nfor i in range(20000): print('a fairly long line of output, number', i)\n"
        f"print('written', flush=True)\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)\nprint('after')"
    )
    run = client.submit_dag("big", [TitanJob("big", command=["python3", "-c", script])])
    ref = f"{run}/big"
    logged = wait_until(
        lambda: (
            (job := client.get_job(ref)).state == "RUNNING" and job.attempts[-1].log_size > 800_000 and job
        ),
        60,
        what="the log written so far",
    )
    assert logged.attempts[-1].state == "RUNNING"

    def until(events: Events) -> bool:
        if lines_held(events)[-1:] == ["written"] and not gate.exists():
            gate.touch()
        return any(name == "eof" for name, _ in events)

    events = signed_in(served).events(f"/live/jobs/{run}/big", until)
    held = lines_held(events)
    assert any(m["reset"] and m["cut"] for m in decoded(events, "lines"))
    assert held[-2:] == ["written", "after"]
    assert 1000 < len(held) < 10000  # the last 256 KiB, not the whole log
    assert client.get_job(ref).attempts[-1].log_size > logged.attempts[-1].log_size


def test_shared_polls_render_writers_and_readers_apart(served: Served) -> None:
    client = served.cluster.client
    run = client.submit_dag("gated", [TitanJob("gate", command=["true"], approval={"message": "go?"}),
                                      TitanJob("on", command=["sleep", "300"])])  # fmt: skip
    wait_until(lambda: client.get_job(f"{run}/gate").state == "WAITING_APPROVAL", 30, what="the gate")
    token, _ = client.create_token("read", name="viewer")
    writer, reader = signed_in(served), served.browser(token)

    def has(event: str) -> Any:
        return lambda events: any(name == event for name, _ in events)

    written = dict(writer.events("/live/approvals", has("approvals")))["approvals"]
    read = dict(reader.events("/live/approvals", has("approvals")))["approvals"]
    assert f'data-ref="{run}/gate"' in written and 'data-testid="approve-button"' in written
    assert f'data-ref="{run}/gate"' in read and 'data-testid="approve-button"' not in read
    services = dict(writer.events("/live/services", has("services")))["services"]
    assert 'data-testid="services-table"' in services


def test_a_live_stream_ends_with_its_session(served: Served) -> None:
    browser = signed_in(served)
    other = Browser(served.url)  # the same session, from another tab
    other.http.cookies.update(browser.http.cookies)
    try:
        with browser.http.stream("GET", "/live/status") as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            while next(lines) != "":  # the first event (or the retry line)
                pass
            assert other.post("/signout", csrf=browser.csrf).status_code == 303
            for _ in lines:  # the server closes the stream: the loop ends (a read timeout fails it)
                pass
    finally:
        other.close()
    assert browser.get("/live/status").status_code == 401


def test_the_streams_ride_out_a_master_restart(served: Served) -> None:
    cluster = served.cluster
    browser = signed_in(served)
    seen: dict[str, str] = {}

    def until(events: Events) -> bool:
        if not seen and any(name == "loadhistory" for name, _ in events):
            cluster.restart_master()
            cluster.wait_for_worker("w1", 30)
            seen["run"] = cluster.client.submit_dag("after", [TitanJob("a", command=["true"])])
        return bool(seen) and any(r["id"] == seen["run"] for batch in decoded(events, "runs") for r in batch)

    browser.events("/live/overview", until, timeout=90)


def test_the_streams_ride_out_a_failover_to_a_standby_master(
    standby_masters: tuple[ProcessCluster, ProcessCluster],
) -> None:
    """A dashboard given both masters' addresses: the leader is killed while a browser watches,
    the standby leads, and the browser sees a run submitted to the new leader."""
    a, b = standby_masters
    both = start_leader_and_standby(a, b)
    running = start_in_thread(DashboardSettings(address=both, token=a.token), port=0)
    browser = Browser(running.url)
    client = TitanClient(address=both, token=a.token)
    seen: dict[str, str] = {}

    def until(events: Events) -> bool:
        if not seen and any(name == "loadhistory" for name, _ in events):
            a.kill_master()
            b.wait_for_master(30)
            seen["run"] = client.submit_dag("after", [TitanJob("a", command=["true"])])
        return bool(seen) and any(r["id"] == seen["run"] for batch in decoded(events, "runs") for r in batch)

    try:
        assert browser.sign_in(a.token).status_code == 303
        browser.events("/live/overview", until, timeout=90)
        assert browser.get("/runs").status_code == 200
    finally:
        browser.close()
        running.stop()
        client.close()


def test_a_dashboard_whose_own_token_is_refused_says_so_on_every_page(cluster: ProcessCluster) -> None:
    running = start_in_thread(DashboardSettings(address=cluster.address, token="not-the-token"), port=0)
    browser = Browser(running.url)
    try:
        assert browser.sign_in(cluster.token).status_code == 303  # people sign in with their own
        events = browser.events(
            "/live/status", lambda e: any(name == "status" and "master-refused" in data for name, data in e)
        )
        assert "--token" in dict(events)["status"]
    finally:
        browser.close()
        running.stop()


def test_a_revoked_token_ends_the_live_streams_it_holds(
    cluster: ProcessCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A browser that only watches makes no request: the dashboard's sweep finds the revoked token."""
    monkeypatch.setattr(state, "SWEEP_EVERY", 0.1)
    monkeypatch.setattr(auth, "RECHECK_EVERY", 0.0)
    running = start_in_thread(DashboardSettings(address=cluster.address, token=cluster.token), port=0)
    token, _ = cluster.client.create_token("read", name="watcher")
    browser = Browser(running.url)
    try:
        assert browser.sign_in(token).status_code == 303
        with browser.http.stream("GET", "/live/status") as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            while next(lines) != "":
                pass
            cluster.client.revoke_token("watcher")
            for _ in lines:  # the server ends the stream (a read timeout would fail the test)
                pass
        assert browser.get("/runs").status_code == 303
    finally:
        browser.close()
        running.stop()
