"""The dashboard in a real browser (chromium, through Playwright) against a live cluster and the
`titan-runtime dashboard` process: what a person sees and does, and that it changes live (every
change is waited for in the page, never slept for)."""

from __future__ import annotations

import itertools
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import APIResponse, Dialog, Locator, Page, Request, Route, expect

from tests.browser.conftest import LIVE_TIMEOUT_MS, UI, requires_chromium
from tests.helpers import ProcessCluster, wait_until
from titan_runtime import TitanJob
from titan_runtime.dashboard.render import duration, size

pytestmark = [pytest.mark.integration, requires_chromium]

Shoot = Callable[[Page, str], Path]

#: Anything in a page's content that changes something: forms that post, htmx posts, and the
#: named controls. A read-only session must find none; a writer finds them (asserted below, so
#: that this selector is known to match what the pages render).
WRITE_TESTIDS = (
    "run-cancel", "job-cancel", "decide-form", "approve-button", "reject-button", "approval-comment",
    "service-stop", "service-restart", "dag-submit", "schedule-delete",
)  # fmt: skip
WRITE_CONTROLS = ", ".join(
    [
        "main form[method=post]",
        *(f"main [hx-{verb}]" for verb in ("post", "put", "patch", "delete")),
        *(f"[data-testid={testid}]" for testid in WRITE_TESTIDS),
    ]
)
GREEN = "rgb(22,163,74)"  # SUCCEEDED in the run graph (run.js)


def waits_for(path: Path, before: list[str], after: list[str]) -> list[str]:
    """A command that prints `before`, waits until the test creates `path`, then prints `after`
    (one line of each to stderr as well)."""
    script = (
        "import os, sys, time\n"
        f"for line in {before!r}: print(line, flush=True)\n"
        "print('waiting for the go-ahead', file=sys.stderr, flush=True)\n"
        f"while not os.path.exists({str(path)!r}): time.sleep(0.05)\n"
        f"for line in {after!r}: print(line, flush=True)\n"
    )
    return ["python3", "-c", script]


def web_server(name: str) -> TitanJob:
    """A service: Python's http.server on the port its worker leases it."""
    return TitanJob(
        name, job_type="SERVICE", command=["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
    )


def serves(endpoint: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{endpoint}/", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def write_controls(page: Page) -> Locator:
    return page.locator(WRITE_CONTROLS)


def row(page: Page, testid: str, attr: str, value: str) -> Locator:
    return page.locator(f'[data-testid="{testid}"][{attr}="{value}"]')


def no_reload_marker(page: Page) -> None:
    """Mark the page's window: the mark is still there only if the page was not loaded again."""
    page.evaluate("window.titanTestMark = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.titanTestMark === true"), "the page was loaded again: not a live change"


class LiveStreams:
    """The live streams (EventSource requests) a page opens from now on, as the network sees them:
    the `open` ones (answered, not ended) and how each `ended`: "closed by the page" (cancelled)
    or "ended by the server"."""

    def __init__(self, page: Page) -> None:
        self.answered: list[Request] = []
        self.how: dict[Request, str] = {}
        page.on("response", lambda r: self.answered.append(r.request) if self.live(r.request) else None)
        page.on("requestfinished", lambda r: self.end(r, "ended by the server"))
        page.on("requestfailed", lambda r: self.end(r, "closed by the page"))

    @staticmethod
    def live(request: Request) -> bool:
        return "/live/" in request.url

    def end(self, request: Request, how: str) -> None:
        if self.live(request):
            self.how.setdefault(request, how)

    @property
    def open(self) -> list[Request]:
        return [r for r in self.answered if r not in self.how]

    @property
    def ended(self) -> list[str]:
        return [self.how[r] for r in self.answered if r in self.how]


def pump_until(page: Page, condition: Callable[[], object], what: str) -> None:
    """Wait until `condition()`, letting Playwright deliver the page's events meanwhile."""
    deadline = time.monotonic() + LIVE_TIMEOUT_MS / 1000
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(20)


# ---------------------------------------------------------------------------------------- tests


def test_sign_in_see_the_workers_live_and_sign_out(cluster: ProcessCluster, ui: UI, shoot: Shoot) -> None:
    client = cluster.client
    etl = [TitanJob(name, command=["true"]) for name in ("extract", "transform", "load")]
    etl[0] >> etl[1] >> etl[2]
    for run in (
        client.submit_dag("nightly-etl", etl),
        client.submit_dag("report", [TitanJob("a", command=["true"])]),
    ):
        client.wait_run(run, 60)

    # A wrong token is refused on the form.
    page = ui.page()
    page.goto(ui.url + "/")
    expect(page).to_have_url(ui.url + "/signin?next=%2F")
    page.get_by_test_id("signin-token").fill("not-a-token")
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("signin-error")).to_contain_text("refused")
    page.context.close()
    assert [error.split(": ", 1)[1] for error in ui.take_errors()] == [
        "console error: Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ]

    page = ui.sign_in(cluster.token)
    expect(page.get_by_test_id("signed-in-as")).to_contain_text("the cluster token")
    expect(page.get_by_test_id("read-only")).to_have_count(0)
    expect(row(page, "worker-row", "data-worker", "w1")).to_have_attribute("data-state", "ALIVE")
    expect(page.get_by_test_id("summary-workers").locator(".value")).to_have_text("1")
    expect(page.locator('[data-testid="run-row"]')).to_have_count(2)

    # Live: a worker that joins and a run that ends show up without the page being loaded again.
    no_reload_marker(page)
    cluster.add_worker("w2", tags=["highmem"], slots=4)
    expect(row(page, "worker-row", "data-worker", "w2")).to_have_attribute("data-state", "ALIVE")
    expect(row(page, "worker-row", "data-worker", "w2")).to_contain_text("highmem")
    expect(page.get_by_test_id("summary-workers").locator(".value")).to_have_text("2")
    live = client.submit_dag("train-model", [TitanJob("fit", command=["true"])])
    client.wait_run(live, 60)
    expect(
        page.locator(f'[data-testid="run-row"][data-run="{live}"] [data-run-state="{live}"]')
    ).to_have_text("SUCCEEDED")
    assert_not_reloaded(page)
    shoot(page, "overview")

    assert ui.take_errors() == []
    # Signing out ends the session's live stream. The page closes its stream as the form is sent:
    # were it still open, a page that sees the stream end before it is left logs an error (htmx's
    # SSE extension: "[object Event]"). To see that every time, the dashboard's answer to the
    # sign-out is held back until the page's stream has ended, by the page or by the server.
    streams = LiveStreams(page)
    ui.go(page, "/runs")
    pump_until(page, lambda: streams.open, "the page's live stream to open")
    held: list[tuple[Route, APIResponse]] = []
    page.route(ui.url + "/signout", lambda route: held.append((route, route.fetch(max_redirects=0))))
    page.get_by_test_id("sign-out").click(no_wait_after=True)
    pump_until(page, lambda: held and not streams.open, "the sign-out and the end of the live stream")
    route, response = held[0]
    route.fulfill(response=response)
    expect(page).to_have_url(ui.url + "/signin")
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    assert ui.take_errors() == []
    assert streams.ended == ["closed by the page"], streams.ended
    page.goto(ui.url + "/runs")  # the session is gone: back to the sign-in form
    expect(page).to_have_url(ui.url + "/signin?next=%2Fruns")
    expect(page.get_by_test_id("signed-in-as")).to_have_count(0)


def test_a_dag_turns_green_live_on_its_run_page(
    cluster: ProcessCluster, ui: UI, shoot: Shoot, tmp_path: Path
) -> None:
    client = cluster.client
    gate = tmp_path / "go"
    extract = TitanJob("extract", command=waits_for(gate, ["reading"], ["read 3 tables"]))
    clean = [TitanJob(name, command=["true"]) for name in ("clean-orders", "clean-users", "clean-events")]
    report = TitanJob("report", command=["true"])
    extract >> clean
    clean >> report
    jobs = [extract, *clean, report]
    run = client.submit_dag("nightly-etl", jobs)
    wait_until(lambda: client.get_job(f"{run}/extract").state == "RUNNING", 30, what="extract to run")

    page = ui.sign_in(cluster.token, f"/runs/{run}")
    expect(page.get_by_test_id("run-state")).to_have_text("RUNNING")
    page.wait_for_function("() => window.titanGraph && window.titanGraph.nodes().length === 5")
    states = page.evaluate(
        "() => Object.fromEntries(window.titanGraph.nodes().map(n => [n.id(), n.data('state')]))"
    )
    assert states == {"extract": "RUNNING", **{job.id: "PENDING" for job in (*clean, report)}}, states
    expect(row(page, "run-node", "data-job", "extract")).to_have_attribute("data-state", "RUNNING")
    expect(write_controls(page)).not_to_have_count(0)  # a writer may cancel the run
    expect(page.get_by_test_id("run-cancel")).to_be_visible()

    no_reload_marker(page)
    gate.touch()
    for job in jobs:
        expect(row(page, "run-node", "data-job", job.id)).to_have_attribute("data-state", "SUCCEEDED")
        expect(row(page, "run-node", "data-job", job.id).locator(".state")).to_have_text("SUCCEEDED")
    page.wait_for_function(
        """green => window.titanGraph.nodes().every(
            n => n.data('state') === 'SUCCEEDED' && n.style('background-color') === green)""",
        arg=GREEN,
        timeout=LIVE_TIMEOUT_MS,
    )
    expect(page.get_by_test_id("run-state")).to_have_text("SUCCEEDED")
    expect(page.get_by_test_id("run-cancel")).to_have_count(0)  # an ended run has nothing to cancel
    expect(page.get_by_test_id("gantt-row")).to_have_count(5)
    assert_not_reloaded(page)
    shoot(page, "run-graph")


def test_a_big_dag_is_laid_out_in_columns_by_depth(cluster: ProcessCluster, ui: UI) -> None:
    """Past 300 jobs the graph is not laid out by dagre (seconds for a thousand nodes) but in
    columns by depth: every edge runs rightwards, and a job's row follows its parents'."""
    width, depth = 40, 10
    layers = [[TitanJob(f"j{d}-{i}", command=["true"]) for i in range(width)] for d in range(depth)]
    for upper, lower in itertools.pairwise(layers):
        for i, job in enumerate(lower):
            upper[i] >> job
            upper[(i + 7) % width] >> job
    run = cluster.client.submit_dag("wide", [job for layer in layers for job in layer])
    page = ui.sign_in(cluster.token, f"/runs/{run}")
    page.wait_for_function(f"() => window.titanGraph && window.titanGraph.nodes().length === {width * depth}")
    assert page.evaluate("() => window.titanLayout().name") == "preset"
    placed = page.evaluate(
        """() => {
          const at = {};
          window.titanGraph.nodes().forEach(n => { at[n.id()] = n.position(); });
          return {
            at: at,
            edges: window.titanGraph.edges().map(e => [e.source().id(), e.target().id()]),
          };
        }"""
    )
    at = placed["at"]
    assert len(placed["edges"]) == 2 * width * (depth - 1)
    assert all(at[a]["x"] < at[b]["x"] for a, b in placed["edges"])  # parents to the left
    columns = {round(p["x"]) for p in at.values()}
    assert len(columns) == depth  # one column a layer
    assert len({(round(p["x"]), round(p["y"])) for p in at.values()}) == width * depth  # none on another


def test_a_jobs_log_lines_arrive_live(cluster: ProcessCluster, ui: UI, shoot: Shoot, tmp_path: Path) -> None:
    client = cluster.client
    gate = tmp_path / "go"
    before = ["loading 12,000 rows", "fitting the model: epoch 1/3", "epoch 1/3: loss 0.412"]
    after = ["epoch 2/3: loss 0.207", "epoch 3/3: loss 0.118", "saved model.pkl"]
    run = client.submit_dag("train", [TitanJob("fit", command=waits_for(gate, before, after))])
    wait_until(lambda: client.get_job(f"{run}/fit").state == "RUNNING", 30, what="fit to run")

    page = ui.sign_in(cluster.token, f"/jobs/{run}/fit")
    log = page.get_by_test_id("log")
    lines = page.get_by_test_id("log-line")
    expect(lines.filter(has_text="waiting for the go-ahead")).to_have_count(1)
    for line in before:
        expect(lines.filter(has_text=line)).to_have_count(1)
    expect(lines.filter(has_text="saved model.pkl")).to_have_count(0)
    expect(page.get_by_test_id("job-state")).to_have_text("RUNNING")
    expect(page.get_by_test_id("job-cancel")).to_be_visible()
    expect(write_controls(page)).not_to_have_count(0)
    shoot(page, "job-log")  # while it runs

    no_reload_marker(page)
    gate.touch()
    expect(lines.filter(has_text="saved model.pkl")).to_have_count(1)
    output = [text for text in lines.all_inner_texts() if text in before + after]
    assert output == before + after, output
    expect(lines.filter(has_text="waiting for the go-ahead")).to_have_class("log-line stderr")
    expect(page.get_by_test_id("job-state")).to_have_text("SUCCEEDED")
    expect(log).to_have_attribute("data-ended", "true")
    expect(page.get_by_test_id("job-cancel")).to_have_count(0)
    assert_not_reloaded(page)


def test_a_jobs_attempts_follow_it_live(cluster: ProcessCluster, ui: UI, tmp_path: Path) -> None:
    client = cluster.client
    # Attempt 1 fails (exit 3) and attempt 2 succeeds, each when the test says so.
    script = (
        "import os, sys, time\n"
        "n = os.environ['TITAN_ATTEMPT']\n"
        "print('attempt', n, flush=True)\n"
        f"while not os.path.exists({str(tmp_path)!r} + '/go' + n): time.sleep(0.05)\n"
        "sys.exit(3 if n == '1' else 0)\n"
    )
    flaky = TitanJob("flaky", command=["python3", "-c", script], retries={"attempts": 2, "backoff": 0.1})
    run = client.submit_dag("flaky", [flaky])
    ref = f"{run}/flaky"
    wait_until(lambda: client.get_job(ref).state == "RUNNING", 30, what="attempt 1 to run")

    page = ui.sign_in(cluster.token, f"/jobs/{ref}")
    rows = page.get_by_test_id("attempt-row")
    first = row(page, "attempt-row", "data-attempt", "1")
    second = row(page, "attempt-row", "data-attempt", "2")

    def cell(attempt: Locator, name: str) -> Locator:
        return attempt.locator(f'[data-cell="{name}"]')

    expect(rows).to_have_count(1)
    expect(cell(first, "state")).to_have_text("RUNNING")
    expect(cell(first, "exit")).to_have_text("")
    expect(page.get_by_test_id("job-ran")).not_to_have_text("")

    no_reload_marker(page)
    (tmp_path / "go1").touch()
    expect(cell(first, "state")).to_have_text("FAILED")
    expect(cell(first, "exit")).to_have_text("3")
    expect(rows).to_have_count(2)  # the retry's row appears, newest first
    assert [r.get_attribute("data-attempt") for r in rows.all()] == ["2", "1"]
    wait_until(lambda: client.get_job(ref).state == "RUNNING", 30, what="attempt 2 to run")
    expect(cell(second, "state")).to_have_text("RUNNING")
    expect(cell(second, "worker")).to_have_text(client.get_job(ref).attempts[1].worker_id)

    (tmp_path / "go2").touch()
    expect(page.get_by_test_id("job-state")).to_have_text("SUCCEEDED")
    expect(cell(second, "state")).to_have_text("SUCCEEDED")
    expect(cell(second, "exit")).to_have_text("0")
    expect(page.locator("#job-exit")).to_have_text("0")
    job = client.get_job(ref)
    for attempt, record in zip((first, second), job.attempts, strict=True):
        assert record.log_size > 0
        expect(cell(attempt, "log")).to_have_text(size(record.log_size))
        expect(cell(attempt, "took")).to_have_text(duration(record.ended_at - record.started_at))
        expect(cell(attempt, "started")).to_have_text(re.compile(r" ago$"))
    expect(page.get_by_test_id("job-ran")).to_have_text(duration(job.ended_at - job.started_at))
    assert_not_reloaded(page)


def test_a_gate_is_approved_from_the_approvals_page(
    cluster: ProcessCluster, ui: UI, shoot: Shoot, tmp_path: Path
) -> None:
    client = cluster.client
    gate = tmp_path / "go"
    build = TitanJob("build", command=["true"], approval={"message": "Ship build 42 to production?"})
    deploy = TitanJob("deploy", command=waits_for(gate, ["deploying build 42"], ["deployed"]))
    build >> deploy
    run = client.submit_dag("release", [build, deploy])
    ref = f"{run}/build"
    wait_until(lambda: client.get_job(ref).state == "WAITING_APPROVAL", 30, what="the gate")

    page = ui.sign_in(cluster.token)
    page.get_by_test_id("nav-approvals").click()
    expect(page).to_have_url(ui.url + "/approvals")
    open_row = row(page, "approval-row", "data-ref", ref)
    expect(open_row).to_contain_text("Ship build 42 to production?")
    expect(open_row.locator(".state")).to_have_text("WAITING_APPROVAL")
    expect(row(page, "approve-button", "data-ref", ref)).to_be_visible()
    row(page, "approval-comment", "data-ref", ref).fill("release notes checked")
    shoot(page, "approvals")

    no_reload_marker(page)
    row(page, "approve-button", "data-ref", ref).click()
    expect(page.get_by_test_id("flash-info")).to_contain_text(f"Approved {ref}")
    decided = row(page, "decided-row", "data-ref", ref)  # the list changes live (a shared poll)
    expect(decided.get_by_test_id("decision")).to_have_text("approved")
    expect(decided).to_contain_text("release notes checked")
    expect(open_row).to_have_count(0)
    assert_not_reloaded(page)
    decision = client.get_job(ref).decision
    assert decision is not None
    assert decision["decision"] == "approved" and decision["comment"] == "release notes checked", decision
    assert decision["by"] == "the cluster token, in the dashboard", decision
    wait_until(lambda: client.get_job(f"{run}/deploy").state == "RUNNING", 30, what="deploy to run")

    ui.go(page, f"/jobs/{ref}")
    expect(page.get_by_test_id("gate-decision")).to_contain_text("approved")
    expect(page.get_by_test_id("decide-form")).to_have_count(0)
    gate.touch()
    assert client.wait_run(run, 60).state == "SUCCEEDED"


def test_a_service_is_stopped_from_the_services_page(cluster: ProcessCluster, ui: UI, shoot: Shoot) -> None:
    client = cluster.client
    client.submit_job(web_server("web"))
    healthy = wait_until(
        lambda: next((s for s in client.list_services("web") if s.state == "HEALTHY"), None), 60, what="web"
    )
    assert serves(healthy.endpoint)

    page = ui.sign_in(cluster.token)
    page.get_by_test_id("nav-services").click()
    expect(page).to_have_url(ui.url + "/services")
    web = row(page, "service-row", "data-service", "web")
    expect(web.get_by_test_id("service-state")).to_have_text("HEALTHY")
    expect(web.get_by_test_id("service-endpoint")).to_have_text(healthy.endpoint)
    expect(write_controls(page)).not_to_have_count(0)
    shoot(page, "services")

    no_reload_marker(page)
    asked: list[str] = []

    def confirm(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    row(page, "service-stop", "data-service", "web").click()
    expect(page.get_by_test_id("flash-info")).to_contain_text("Stopping")
    assert asked == ["Stop web for good?"], asked
    expect(web).to_have_count(0)  # gone from the running ones, live
    expect(page.get_by_test_id("services-table")).to_contain_text("No services.")
    assert_not_reloaded(page)
    wait_until(lambda: not client.list_services("web"), 30, what="web to stop")
    assert [s.state for s in client.list_services("web", include_ended=True)] == ["STOPPED"]
    wait_until(lambda: not serves(healthy.endpoint), 30, what="the server to be gone")


def test_a_read_only_session_finds_no_write_control(cluster: ProcessCluster, ui: UI) -> None:
    client = cluster.client
    check = TitanJob("check", command=["true"], approval={"message": "Promote the canary?"})
    after = TitanJob("promote", command=["true"])
    check >> after
    run = client.submit_dag("canary", [check, after])
    client.submit_job(web_server("web"))
    wait_until(lambda: client.get_job(f"{run}/check").state == "WAITING_APPROVAL", 30, what="the gate")
    wait_until(lambda: any(s.state == "HEALTHY" for s in client.list_services("web")), 60, what="web")
    token, _ = client.create_token("read", name="viewer")

    page = ui.sign_in(token, f"/runs/{run}")
    expect(page.get_by_test_id("read-only")).to_be_visible()
    expect(page.get_by_test_id("signed-in-as")).to_contain_text("read token viewer")
    expect(page.get_by_test_id("run-state")).to_have_text("RUNNING")  # a writer could cancel it
    expect(row(page, "run-node", "data-job", "check")).to_have_attribute("data-state", "WAITING_APPROVAL")
    expect(write_controls(page)).to_have_count(0)

    ui.go(page, f"/jobs/{run}/check")  # a running job with an open gate: a writer could cancel or decide
    expect(page.get_by_test_id("job-gate")).to_contain_text("Waiting for a decision.")
    expect(page.get_by_test_id("job-state")).to_have_text("WAITING_APPROVAL")
    expect(write_controls(page)).to_have_count(0)

    ui.go(page, "/approvals")
    expect(row(page, "approval-row", "data-ref", f"{run}/check")).to_be_visible()
    expect(write_controls(page)).to_have_count(0)
    # What the live poll renders for this session is the readers' variant too.
    later = client.submit_dag(
        "canary-2", [TitanJob("check", command=["true"], approval={"message": "And this?"})]
    )
    expect(row(page, "approval-row", "data-ref", f"{later}/check")).to_be_visible()
    expect(write_controls(page)).to_have_count(0)

    ui.go(page, "/services")
    expect(row(page, "service-row", "data-service", "web")).to_be_visible()
    expect(write_controls(page)).to_have_count(0)
    client.submit_job(web_server("web-2"))
    expect(row(page, "service-row", "data-service", "web-2").get_by_test_id("service-state")).to_have_text(
        "HEALTHY"
    )
    expect(write_controls(page)).to_have_count(0)

    ui.go(page, "/services/web")
    expect(page.get_by_test_id("service-id")).to_have_text("web")
    expect(write_controls(page)).to_have_count(0)
    assert client.get_job(f"{run}/check").decision is None  # nothing was decided meanwhile
