"""The dashboard's performance goals (issue 23), each measured against a baseline of the same run.

Every goal gets a cluster of its own (a master and worker processes, `_common.cluster`) and the
dashboard as a process of its own (`python -m titan_runtime dashboard --port 0`, its own token the
cluster's), as people run it: what is timed is the dashboard's and the master's work, not this
script's threads. Every process is stopped by its pid; everything lives in temporary directories.

1. The overview (`GET /`, signed in through the sign-in form, the session cookie kept) with 100
   workers connected and 10,000 finished runs in history: median and p95 of N requests (target
   <= 200 ms), while another session has the overview's live stream open (someone already on the
   page: the dashboard renders its updates meanwhile). The workers: 1 real worker process (which
   ran the history's jobs) and 99 hand-written ones (`tests.helpers.HandWrittenWorker`: a real
   WorkerLink gRPC stream with a hello, then a heartbeat with a CPU and memory load every heartbeat
   interval, all from one thread of this process), connected once the history is written so that
   no job goes to them. 100 worker processes would not fit in 2 cores, and the master and the
   dashboard cannot tell these from real ones: they register, heartbeat, are listed with their
   load (the page is checked to show all 100). The history: 10,000 runs of one `true` job each,
   submitted by 8 threads (`submit_dag`), the seeding timed and printed. Baselines, same run: the
   same page with 1 worker and an empty history (measured before seeding, same master and
   dashboard), and the SDK call pair the page needs at least (`list_workers()` +
   `list_runs(limit=20)`) timed from here, at both sizes.
2. A 50 MB log followed live: a job that writes 50 MB of 100-byte lines over 20 s (it starts
   writing once its page is open), its job page open in headless Chromium driven by Playwright
   (launched as tests/browser/conftest.py does: /usr/bin/chromium, the same flags), signed in
   through the form. Sampled every 0.25 s until the page has the log's end: the renderer
   processes (found with the browser's CDP `SystemInfo.getProcessInfo`; the largest is the tab's)
   RSS and USS (its private memory) with psutil, and the page's JS heap and DOM node count (CDP
   `Performance.getMetrics`); peaks reported (target: the tab <= 300 MB, held to the RSS, which
   counts the memory it shares with the browser's other processes too). Baseline, same run and
   browser: the same page for a job that writes 5 lines over the same time. The page is checked to
   have followed: the log's last line is on it, with at most 2,000 lines.
3. Watchers of a running 1,000-job DAG (10 layers of 100, each job `sleep 0.02`, two parents in
   the layer above) on 2 workers x 2 slots: the master's CPU time (psutil, user + system) from
   submission to 1.5 s after the run's end, ways taking turns round after round (the order
   reversed every other round). A watcher does what a browser on the run page does: GET
   /runs/RUN with a session of its own (the dashboard checks the run's header with the session's
   token and draws the page from its one watch of the run) and then the page's one server-sent
   event stream, /live/runs/RUN
   (which htmx's SSE extension opens), read until the run has ended. Twenty Chromium pages would
   not fit in 2 cores beside the master and the workers, and a page costs the master only its
   requests (the dashboard fans its one watch of the run out to every stream; checked with the
   master's `--metrics-port`: the same RPCs, 40 GetRun headers, with 2 pages + 18 clients as with
   20 clients). So
   the ways are: no watcher; 20 plain HTTP clients (httpx, threads of this script, a session
   each) that open the stream only (the live part alone); 20 that load the page and open the
   stream (the goal's 20 browsers); 2 real Chromium pages + 18 such clients; and a control, no
   watcher but a process spinning on one core (what sharing the cores alone costs). The dashboard
   (with its one watch of the cluster) runs in every way. Then, where it goes, on a run that
   stands still (its first job sleeps): the master's CPU for 20 page loads, apart from 20 streams
   opened to their snapshot; and how long a Chromium page takes to draw that run's graph (and its
   layout alone, run again in the page). Each way's CPU is also shown without its kernel part.
   Target:
   <= 5 % more master CPU with 20 watchers than with none.

    .venv/bin/python benchmarks/bench_dashboard.py [--quick] [--goals overview,log,watchers] [--rounds N]
                                                   [--log-seconds S]

The full size takes about 12 minutes on 2 cores. `--quick`: 1,000 runs, 30 requests, a 10 MB log
over 5 s, 2 rounds (about 5 minutes, most of it the watchers' rounds).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import itertools
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.helpers

from _common import Timer, cluster, table

from tests.helpers import HandWrittenWorker
from titan_runtime import TitanClient, TitanJob
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.testing import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PYTHON,
    DashboardProcess,
    ProcessCluster,
    wait_until,
)
from titan_runtime.version import __version__

VIEWPORT = {"width": 1280, "height": 800}
_NONCE = re.compile(r'name="nonce" value="([^"]+)"')
MB = 1024 * 1024
#: Seconds a dashboard's run watch outlives its last browser (live.LINGER), and a little more.
LINGER_S = 11.0
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


@dataclass
class Size:
    runs: int = 10_000
    workers: int = 100
    requests: int = 100
    log_mb: float = 50.0
    log_seconds: float = 20.0
    rounds: int = 5
    layers: int = 10
    width: int = 100
    watchers: int = 20
    pages: int = 2


QUICK = Size(runs=1_000, requests=30, log_mb=10.0, log_seconds=5.0, rounds=2)


# ------------------------------------------------------------------------------- the dashboard


@contextmanager
def dashboard_for(c: ProcessCluster) -> Iterator[DashboardProcess]:
    running = DashboardProcess(c)
    try:
        yield running
    finally:
        running.stop()


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium through Playwright, launched as tests/browser/conftest.py does; None
    without /usr/bin/chromium or playwright (the goals that need it are skipped, or that part)."""
    if not Path(CHROMIUM).exists() or importlib.util.find_spec("playwright") is None:
        print(f"no {CHROMIUM} or no playwright (pip install -e '.[dev]'): the browser parts are skipped")
        yield None
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(headless=True, executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def signed_in(url: str, token: str) -> httpx.Client:
    """An HTTP client with a session: the sign-in form posted with the token, its cookie kept."""
    http = httpx.Client(base_url=url, timeout=60, follow_redirects=False, trust_env=False)
    form = http.get("/signin")
    nonce = _NONCE.search(form.text)
    assert nonce, form.text
    answer = http.post("/signin", data={"token": token, "nonce": nonce.group(1), "next": "/"})
    assert answer.status_code == 303, (answer.status_code, answer.text)
    return http


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def kernel_seconds(pid: int) -> float:
    """The part of `cpu_seconds` spent in the kernel for the process (system time)."""
    return psutil.Process(pid).cpu_times().system


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ------------------------------------------------------------------------- 1. the overview page


class FakeWorkers:
    """Hand-written workers (`tests.helpers.HandWrittenWorker`): a hello each, then a heartbeat
    each every heartbeat interval from one thread, with a load that moves (the sparklines)."""

    def __init__(self, c: ProcessCluster, count: int) -> None:
        self.workers: list[HandWrittenWorker] = []
        self._stop = threading.Event()
        for i in range(count):
            name = f"hw-{i:03d}"
            hello = pb.WorkerHello(
                worker_id=name,
                name=name,
                host="bench-host",
                pid=os.getpid(),
                slots=4,
                cpu_count=4,
                memory_bytes=8 * 1024 * MB,
                version=__version__,
                memory_enforcement="rlimit",
            )
            try:
                self.workers.append(HandWrittenWorker(c.address, c.token, hello))
            except BaseException:
                for worker in self.workers:
                    worker.close()
                raise
        self.interval = self.workers[0].welcome.heartbeat_interval if self.workers else 1.0
        self._thread = threading.Thread(target=self._beat, name="heartbeats", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        rng = random.Random(23)
        while not self._stop.wait(self.interval):
            for worker in self.workers:
                beat = pb.Heartbeat(cpu_percent=rng.uniform(5, 95), memory_percent=rng.uniform(20, 60))
                worker.send(pb.WorkerMessage(heartbeat=beat))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for worker in self.workers:
            worker.send(pb.WorkerMessage(leaving=True))
            worker.close()


class LiveTail:
    """A browser left on a page: its event stream read in a thread (a session of its own) until
    `close`; it counts the events."""

    def __init__(self, url: str, token: str, path: str) -> None:
        self.http = signed_in(url, token)
        self.path = path
        self.events = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"tail {path}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self.http.stream("GET", self.path, headers={"Accept": "text/event-stream"}) as answer:
            assert answer.status_code == 200, answer.status_code
            for line in answer.iter_lines():
                if line.startswith("event: "):
                    self.events += 1
                if self._stop.is_set():
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)  # the overview's stream has an event every 2 s (the workers' load)
        self.http.close()


def time_overview(http: httpx.Client, n: int) -> list[float]:
    for _ in range(3):  # warm: templates compiled, connections open
        assert http.get("/").status_code == 200
    times = []
    for _ in range(n):
        with Timer() as t:
            answer = http.get("/")
            body = answer.content
        assert answer.status_code == 200 and body, answer.status_code
        times.append(t.seconds)
    return times


def time_sdk_pair(client: TitanClient, n: int) -> list[float]:
    client.list_workers()
    times = []
    for _ in range(n):
        with Timer() as t:
            client.list_workers()
            client.list_runs(limit=20)
        times.append(t.seconds)
    return times


def seed_history(c: ProcessCluster, runs: int, threads: int = 8) -> float:
    """`runs` finished runs of one `true` job each, submitted from a thread pool; their seconds."""
    clients = [TitanClient(address=c.address, token=c.token, reconnect_timeout=0) for _ in range(threads)]
    counter = itertools.count()

    def submit(chunk: range) -> None:
        client = clients[next(counter) % threads]
        for i in chunk:
            client.submit_dag(f"history-{i:05d}", [TitanJob("t", command=["true"])])

    step = 100
    with Timer() as t:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(submit, [range(s, min(runs, s + step)) for s in range(0, runs, step)]))
        client = c.client
        wait_until(
            lambda: not client.list_runs(limit=1, states=["RUNNING"]), 3600, 0.5, what="the history to run"
        )
    for one in clients:
        one.close()
    failed = c.client.list_runs(limit=10, states=["FAILED", "CANCELLED"])
    assert not failed, failed
    return t.seconds


def goal_overview(size: Size) -> list[tuple[str, str, str, str, str]]:
    with cluster(workers=(("w1", 4),)) as c, dashboard_for(c) as dash:
        client = c.client
        http = signed_in(dash.url, c.token)
        # Someone else on the overview all along: the dashboard renders its live updates meanwhile.
        tail = LiveTail(dash.url, c.token, "/live/overview")
        try:
            empty = time_overview(http, size.requests)
            sdk_empty = time_sdk_pair(client, size.requests)
            seconds = seed_history(c, size.runs)
            print(
                f"seeded {size.runs:,} runs of one `true` job in {seconds:.1f} s "
                f"({size.runs / seconds:.0f} runs/s, 8 threads of submit_dag, 1 worker x 4 slots)",
                flush=True,
            )
            fakes = FakeWorkers(c, size.workers - 1)
            try:
                wait_until(
                    lambda: sum(w.state == "ALIVE" for w in client.list_workers()) == size.workers,
                    60,
                    what=f"{size.workers} workers",
                )
                page = http.get("/").text
                missing = [w for w in fakes.workers if f'data-worker="{w.welcome.worker_id}"' not in page]
                assert not missing, f"{len(missing)} workers not on the overview"
                full = time_overview(http, size.requests)
                sdk_full = time_sdk_pair(client, size.requests)
                alive = sum(w.state == "ALIVE" for w in client.list_workers())
                assert alive == size.workers, f"{alive} workers alive at the end"
                runs_listed = len(client.list_runs(limit=1000))
            finally:
                fakes.close()
        finally:
            tail.close()
            http.close()
    assert runs_listed == min(1000, size.runs), runs_listed
    print(f"the overview's live stream, open all along in another session: {tail.events} events", flush=True)
    ms = lambda v: f"{v * 1000:.1f} ms"  # noqa: E731
    med, p95 = statistics.median, lambda v: pct(v, 0.95)
    label = f"{size.workers} workers, {size.runs:,} runs"
    rows = [
        (f"GET / median, {label} (vs 1 worker, none)", ms(med(full)), ms(med(empty)), f"{med(full) / med(empty):.2f}", "<= 200 ms"),
        (f"GET / p95, {label} (vs 1 worker, none)", ms(p95(full)), ms(p95(empty)), f"{p95(full) / p95(empty):.2f}", "(<= 200 ms)"),
        (f"GET / median vs the SDK pair, {label}", ms(med(full)), ms(med(sdk_full)), f"{med(full) / med(sdk_full):.2f}", ""),
        (f"SDK pair median, {label} (vs 1 worker, none)", ms(med(sdk_full)), ms(med(sdk_empty)), f"{med(sdk_full) / med(sdk_empty):.2f}", ""),
    ]  # fmt: skip
    table(
        f"the overview, GET / signed in, {size.requests} requests each (seeding {size.runs:,} runs: "
        f"{seconds:.1f} s); the SDK pair: list_workers() + list_runs(limit=20)",
        rows,
    )
    return rows


# ------------------------------------------------------------------- 2. following a big log live

WRITER = textwrap.dedent(
    """\
    import os, sys, time
    go, total, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    deadline = time.monotonic() + 300
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("never told to go")
        time.sleep(0.05)
    out = sys.stdout.buffer
    start = time.monotonic()
    if total < 1000:  # a few lines, spread over the same time
        for i in range(total):
            out.write(b"line %d of a short log\\n" % i)
            out.flush()
            time.sleep(seconds / total)
    else:
        lines = total // 100
        step = 0.05
        per = max(1, int(lines * step / seconds))
        filler = b"x" * 89
        i = 0
        while i < lines:
            n = min(per, lines - i)
            out.write(b"".join(b"%09d %s\\n" % (j, filler) for j in range(i, i + n)))
            out.flush()
            i += n
            ahead = start + seconds * i / lines - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    out.write(b"END of the log\\n")
    out.flush()
    """
)


@dataclass
class Follow:
    heap_mb: float = 0.0
    rss_mb: float = 0.0
    uss_mb: float = 0.0
    renderers: int = 0
    nodes: int = 0
    dashboard_rss_mb: float = 0.0
    lines_on_page: int = 0
    seconds: float = 0.0
    behind_s: float = 0.0  # from the job's end to the page showing the log's end
    samples: list[tuple[float, float, float, float, int]] = field(default_factory=list)

    def timeline(self) -> str:
        """Seconds: renderer RSS / USS MB, DOM nodes, at about ten points of the follow."""
        picked = self.samples[:: max(1, len(self.samples) // 10)] + self.samples[-1:]
        return ", ".join(f"{t:.0f}s {rss:.0f}/{uss:.0f}MB {nodes}n" for t, _, rss, uss, nodes in picked)


def renderer_memory_mb(browser_cdp: Any) -> tuple[float, float, int]:
    """The largest renderer process's RSS and USS (its private memory), and how many there are."""
    info = browser_cdp.send("SystemInfo.getProcessInfo")
    sizes = []
    for process in info["processInfo"]:
        if process["type"] == "renderer":
            try:
                memory = psutil.Process(process["id"]).memory_full_info()
            except psutil.NoSuchProcess:
                continue
            sizes.append((memory.rss / MB, memory.uss / MB))
    rss, uss = max(sizes, default=(0.0, 0.0))
    return rss, uss, len(sizes)


def follow_log(
    c: ProcessCluster, dash: DashboardProcess, browser: Any, tmp: Path, total: int, seconds: float, name: str
) -> Follow:
    go = tmp / f"go-{name}"
    writer = tmp / "writer.py"
    writer.write_text(WRITER)
    client = c.client
    run = client.submit_dag(
        name, [TitanJob("log", command=[PYTHON, str(writer), str(go), str(total), str(seconds)])]
    )
    ref = f"{run.id}/log"
    wait_until(lambda: client.get_job(ref).state == "RUNNING", 60, what="the writer to run")
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(60_000)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        path = f"/jobs/{run.id}/log"
        page.goto(dash.url + path)
        page.get_by_test_id("signin-token").fill(c.token)
        page.get_by_test_id("signin-submit").click()
        page.get_by_test_id("job-state").wait_for()
        assert page.url == dash.url + path, page.url
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        browser_cdp = browser.new_browser_cdp_session()
        dashboard_proc = psutil.Process(dash.proc.pid)
        result = Follow()
        started = time.monotonic()

        def sample() -> None:
            metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            heap, nodes = metrics["JSHeapUsedSize"] / MB, int(metrics["Nodes"])
            rss, uss, renderers = renderer_memory_mb(browser_cdp)
            result.samples.append((time.monotonic() - started, heap, rss, uss, nodes))
            result.heap_mb = max(result.heap_mb, heap)
            result.rss_mb = max(result.rss_mb, rss)
            result.uss_mb = max(result.uss_mb, uss)
            result.renderers = max(result.renderers, renderers)
            result.nodes = max(result.nodes, nodes)
            result.dashboard_rss_mb = max(result.dashboard_rss_mb, dashboard_proc.memory_info().rss / MB)

        sample()
        go.touch()
        job_ended = 0.0
        while True:
            sample()
            if not job_ended and client.get_job(ref).state in TERMINAL:
                job_ended = time.monotonic()
            if job_ended and page.locator("#log[data-ended=true]").count():
                break
            if time.monotonic() - started > seconds + 600:
                raise AssertionError("the page never showed the log's end")
            page.wait_for_timeout(250)
        sample()
        result.seconds = time.monotonic() - started
        result.behind_s = time.monotonic() - job_ended
        lines = page.locator("#log .log-line")
        result.lines_on_page = lines.count()
        last = lines.nth(result.lines_on_page - 1).text_content()
        assert last == "END of the log", last
        assert result.lines_on_page <= 2000, result.lines_on_page
        assert not errors, errors
        assert client.get_job(ref).state == "SUCCEEDED"
        browser_cdp.detach()
        return result
    finally:
        context.close()


def goal_log(size: Size) -> list[tuple[str, str, str, str, str]]:
    total = int(size.log_mb * MB)
    with (
        tempfile.TemporaryDirectory(prefix="titan-bench-log-") as tmp,
        chromium() as browser,
        cluster(workers=(("w1", 2),)) as c,
        dashboard_for(c) as dash,
    ):
        if browser is None:
            return []
        small = follow_log(c, dash, browser, Path(tmp), 5, size.log_seconds, "few-lines")
        big = follow_log(c, dash, browser, Path(tmp), total, size.log_seconds, "big-log")
    print(
        f"big log: {len(big.samples)} samples over {big.seconds:.1f} s, the page at the log's end "
        f"{big.behind_s:.1f} s after the job's; {big.lines_on_page} lines on the page at the end; "
        f"the few lines' page: {len(small.samples)} samples over {small.seconds:.1f} s; at most "
        f"{max(big.renderers, small.renderers)} renderer process(es)\nbig log, renderer RSS/USS and DOM "
        f"nodes: {big.timeline()}\nfew lines: {small.timeline()}",
        flush=True,
    )
    label = f"{size.log_mb:g} MB log over {size.log_seconds:g} s (vs 5 lines)"
    rows = [
        (f"tab renderer RSS peak, {label}", f"{big.rss_mb:.0f} MB", f"{small.rss_mb:.0f} MB", f"{big.rss_mb / small.rss_mb:.2f}", "<= 300 MB"),
        (f"tab renderer USS (private) peak, {label}", f"{big.uss_mb:.0f} MB", f"{small.uss_mb:.0f} MB", f"{big.uss_mb / small.uss_mb:.2f}", "(<= 300 MB)"),
        (f"tab JS heap peak, {label}", f"{big.heap_mb:.1f} MB", f"{small.heap_mb:.1f} MB", f"{big.heap_mb / small.heap_mb:.2f}", "(<= 300 MB)"),
        (f"DOM nodes peak, {label}", f"{big.nodes}", f"{small.nodes}", f"{big.nodes / small.nodes:.2f}", ""),
        (f"dashboard process RSS peak, {label}", f"{big.dashboard_rss_mb:.0f} MB", f"{small.dashboard_rss_mb:.0f} MB", f"{big.dashboard_rss_mb / small.dashboard_rss_mb:.2f}", ""),
        (f"the page at the log's end, after the job's end, {label}", f"{big.behind_s:.1f} s", f"{small.behind_s:.1f} s", "", ""),
    ]  # fmt: skip
    table("a job's page following its log live in headless Chromium (peaks sampled every 0.25 s)", rows)
    return rows


# --------------------------------------------------------------------- 3. watchers of a big run


def layered(layers: int, width: int, root: str | None = None) -> list[TitanJob]:
    """`layers` x `width` jobs of `sleep 0.02`, each after two of the layer above (the first layer
    after `root`, if given)."""
    jobs = []
    for layer in range(layers):
        for i in range(width):
            parents = [f"l{layer - 1}_{i}", f"l{layer - 1}_{(i + 1) % width}"] if layer else None
            if not layer and root:
                parents = [root]
            jobs.append(TitanJob(f"l{layer}_{i}", command=["/bin/sleep", "0.02"], parents=parents))
    return jobs


def sse_watch(
    http: httpx.Client, run_id: str, seen: list[float], page: bool = True, first: bool = False
) -> None:
    """What a browser on the run page does: the page, then its event stream until the run ends
    (`first`: until its first state of the run, the snapshot); `seen` gets the time it did."""
    if page:
        answer = http.get(f"/runs/{run_id}")
        assert answer.status_code == 200, answer.status_code
    with http.stream("GET", f"/live/runs/{run_id}", headers={"Accept": "text/event-stream"}) as answer:
        assert answer.status_code == 200, answer.status_code
        name, data = "message", []
        for line in answer.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "":
                if name == "run" and data:
                    run = json.loads("\n".join(data)).get("run") or {}
                    if first or run.get("state") in TERMINAL:
                        seen.append(time.monotonic())
                        return
                name, data = "message", []
    raise AssertionError("the stream ended before the run")


def sign_in_page(browser: Any, url: str, token: str) -> Any:
    """A Chromium page in a context of its own, signed in through the form, left on about:blank."""
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto(url + "/signin")
    page.get_by_test_id("signin-token").fill(token)
    page.get_by_test_id("signin-submit").click()
    page.get_by_test_id("signed-in-as").wait_for()
    page.goto("about:blank")
    return page


def watched_run(
    c: ProcessCluster,
    jobs: list[TitanJob],
    name: str,
    watchers: tuple[list[httpx.Client], bool, list[Any]],
    url: str,
) -> tuple[float, float, float, float]:
    """One run of `jobs` watched by `watchers` (HTTP clients, whether they load the page first,
    Chromium pages): the master's CPU seconds from submission to SETTLE s after the run's end (the
    same window every way: what a late page does after it costs the master nothing but its idle
    time), the part of them in the kernel, the run's own seconds, and how long after the SDK's
    wait the last watcher saw the end."""
    assert c.master is not None
    master, client = c.master.pid, c.client
    clients, page_load, pages = watchers
    before, kernel_before = cpu_seconds(master), kernel_seconds(master)
    run = client.submit_dag(name, jobs)
    seen: list[float] = []
    threads = [
        threading.Thread(target=sse_watch, args=(one, run.id, seen, page_load), daemon=True)
        for one in clients
    ]
    for thread in threads:
        thread.start()
    for page in pages:  # the page goes on loading (and opens its stream) while the run goes on
        page.goto(f"{url}/runs/{run.id}", wait_until="commit")
    record = run.wait()
    ended = time.monotonic()
    assert record.state == "SUCCEEDED", record.reason
    after: list[float] = []  # read on time by a timer: a busy page may keep this thread waiting
    timer = threading.Timer(SETTLE, lambda: after.extend((cpu_seconds(master), kernel_seconds(master))))
    timer.start()
    for page in pages:
        state = page.get_by_test_id("run-state")
        wait_until(lambda s=state: s.text_content() == "SUCCEEDED", 300, 0.1, what="a page to show the end")
        seen.append(time.monotonic())
    for thread in threads:
        thread.join(60)
    timer.join()
    assert len(seen) == len(threads) + len(pages), (len(seen), len(threads), len(pages))
    late = max(seen, default=ended) - ended
    used, kernel = after[0] - before, after[1] - kernel_before
    for page in pages:
        page.goto("about:blank")  # its stream closes
    return used, kernel, record.ended_at - record.created_at, late


@contextmanager
def busy_core(wanted: bool) -> Iterator[None]:
    """A process spinning on one core while the run goes on (when `wanted`): what two Chromium
    pages drawing and updating a 1,000-node graph take from the same 2 cores, without a request
    to the master, to tell the master's CPU spent on the pages' requests from its CPU made dearer
    by sharing the cores. Stopped by its pid."""
    if not wanted:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait(10)


#: Seconds after a watched run's end before the master's CPU is read, every way alike.
SETTLE = 1.5


def where_it_goes(
    c: ProcessCluster, size: Size, clients: list[httpx.Client], pages: list[Any], url: str
) -> tuple[list[float], list[float], list[float], list[float]]:
    """On a run that runs but stands still (its first job sleeps, so nothing else moves the
    master's CPU): the master's CPU for the watchers' page loads (each GET /runs/RUN reads the run
    and its jobs with the session's token), apart from their streams opened to the snapshot; and
    how long a Chromium page takes to draw that run's graph, and its layout alone."""
    assert c.master is not None
    master, client = c.master.pid, c.client
    held = client.submit_dag(
        "held", [TitanJob("hold", command=["sleep", "600"]), *layered(size.layers, size.width, "hold")]
    )
    wait_until(lambda: client.get_job(f"{held.id}/hold").state == "RUNNING", 60, what="the held run")
    loads, streams, drawn, layout = [], [], [], []
    for _ in range(3):
        time.sleep(LINGER_S)  # the last run's watch gone
        before = cpu_seconds(master)
        for one in clients:
            assert one.get(f"/runs/{held.id}").status_code == 200
        loads.append(cpu_seconds(master) - before)
        before = cpu_seconds(master)
        seen: list[float] = []
        for one in clients:
            sse_watch(one, held.id, seen, page=False, first=True)
        streams.append(cpu_seconds(master) - before)
    for page in pages:
        time.sleep(LINGER_S)
        with Timer() as t:
            page.goto(f"{url}/runs/{held.id}", wait_until="commit")
            page.wait_for_function("() => window.titanGraph !== undefined", timeout=300_000)
        drawn.append(t.seconds)
        layout.append(page.evaluate(RELAYOUT) / 1000)  # of which the layout: run again, timed in the page
        page.goto("about:blank")
    client.cancel(held.id)
    return loads, streams, drawn, layout


#: The run page's graph laid out again as it is at first (run.js's layoutOptions), timed in the page (ms).
RELAYOUT = """() => {
  const t0 = performance.now();
  window.titanGraph.layout(window.titanLayout()).run();
  return performance.now() - t0;
}"""


def goal_watchers(size: Size) -> list[tuple[str, str, str, str, str]]:
    jobs = layered(size.layers, size.width)
    n_jobs, n = len(jobs), size.watchers
    labels = {
        "none": "no watcher",
        "streams": f"{n} HTTP streams, no page load",
        "http": f"{n} HTTP watchers (page + stream)",
        "pages": f"{size.pages} Chromium pages + {n - size.pages} HTTP watchers",
        "busy": "no watcher, a core kept busy beside it (a control for the pages' own CPU)",
    }
    with (
        chromium() as browser,
        cluster(workers=(("w1", 2), ("w2", 2))) as c,
        dashboard_for(c) as dash,
    ):
        if browser is None:
            del labels["pages"], labels["busy"]
        ways = list(labels)
        cpu: dict[str, list[float]] = {w: [] for w in ways}
        kernel: dict[str, list[float]] = {w: [] for w in ways}
        wall: dict[str, list[float]] = {w: [] for w in ways}
        lag: dict[str, list[float]] = {w: [] for w in ways}
        assert c.master is not None
        master, client = c.master.pid, c.client
        clients = [signed_in(dash.url, c.token) for _ in range(n)]
        try:
            pages = [sign_in_page(browser, dash.url, c.token) for _ in range(size.pages if browser else 0)]
            watchers: dict[str, tuple[list[httpx.Client], bool, list[Any]]] = {
                "none": ([], False, []),
                "streams": (clients, False, []),
                "http": (clients, True, []),
                "pages": (clients[: n - size.pages], True, pages),
                "busy": ([], False, []),
            }
            client.submit_dag("warm", layered(2, 10)).wait()  # the first run pays for imports and caches
            time.sleep(2.0)
            before = cpu_seconds(master)
            time.sleep(10.0)
            idle = (cpu_seconds(master) - before) / 10.0
            print(f"the master idle (2 workers, the dashboard's cluster watch): {idle * 100:.1f} % of a CPU")
            for r in range(size.rounds):
                for way in ways if r % 2 == 0 else ways[::-1]:
                    time.sleep(2.0)  # the previous run's streams gone
                    with busy_core(way == "busy"):
                        used, sys_used, took, late = watched_run(
                            c, jobs, f"watch-{way}-{r}", watchers[way], dash.url
                        )
                    cpu[way].append(used)
                    kernel[way].append(sys_used)
                    wall[way].append(took)
                    lag[way].append(late)
                    print(
                        f"round {r + 1} {way:7}: master CPU {used:.2f} s ({sys_used:.2f} in the kernel), "
                        f"the run {took:.2f} s "
                        f"(the last watcher saw the end {late:.2f} s after the SDK's wait)",
                        flush=True,
                    )
            loads, streams, drawn, layout = where_it_goes(c, size, clients, pages, dash.url)
        finally:
            for one in clients:
                one.close()
    med = statistics.median
    base, base_wall = cpu["none"], wall["none"]
    rows = []
    for way in ways[1:]:
        ratio = med(v / b for v, b in zip(cpu[way], base, strict=True))
        target = "<= 1.05" if way in ("http", "pages") else ""
        rows.append(
            (
                f"master CPU per run, {labels[way]}",
                f"{med(cpu[way]):.2f} s",
                f"{med(base):.2f} s",
                f"{ratio:.3f}",
                target,
            )
        )
    for way in ways[1:]:  # the master's own work, apart from what sharing the cores costs in the kernel
        user = [c - k for c, k in zip(cpu[way], kernel[way], strict=True)]
        base_user = [c - k for c, k in zip(base, kernel["none"], strict=True)]
        rows.append(
            (
                f"master CPU per run outside the kernel, {labels[way]}",
                f"{med(user):.2f} s",
                f"{med(base_user):.2f} s",
                f"{med(u / b for u, b in zip(user, base_user, strict=True)):.3f}",
                "",
            )
        )
    for way in ways[1:]:
        ratio = med(v / b for v, b in zip(wall[way], base_wall, strict=True))
        rows.append(
            (
                f"the run's time, {labels[way]}",
                f"{med(wall[way]):.2f} s",
                f"{med(base_wall):.2f} s",
                f"{ratio:.3f}",
                "",
            )
        )
    for way in ways:
        rows.append(
            (
                f"master CPU per run, {labels[way]}: min-max",
                f"{min(cpu[way]):.2f}-{max(cpu[way]):.2f}",
                "",
                "",
                "",
            )
        )
    for way in ways[1:]:
        rows.append(
            (
                f"the last watcher saw the end, after the SDK's wait: {labels[way]}",
                f"{med(lag[way]):.2f} s",
                "",
                "",
                "",
            )
        )
    for what, values in (
        (f"{n} x GET /runs/RUN of a running {n_jobs + 1:,}-job run", loads),
        (f"{n} x its stream opened, to its snapshot", streams),
    ):
        rows.append(
            (
                f"master CPU: {what} (vs a run, no watcher)",
                f"{med(values):.2f} s",
                f"{med(base):.2f} s",
                f"{med(values) / med(base):.3f}",
                "",
            )
        )
    if drawn:
        rows.append(("Chromium: that run's page until its graph is drawn", f"{med(drawn):.2f} s", "", "", ""))
        rows.append(
            (
                "Chromium: of which its layout, run again in the page",
                f"{med(layout):.2f} s",
                "",
                "",
                "",
            )
        )
    table(
        f"a running {n_jobs:,}-job DAG watched, 2 workers x 2 slots (master CPU from submission to "
        f"the run's end + {SETTLE} s, medians of {size.rounds} rounds; ratios: median of each round's "
        f"against that round's run with no watcher); where it goes: medians of 3",
        rows,
    )
    return rows


GOALS: dict[str, Callable[[Size], list[tuple[str, str, str, str, str]]]] = {
    "overview": goal_overview,
    "log": goal_log,
    "watchers": goal_watchers,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 runs, a 10 MB log, 2 rounds")
    parser.add_argument("--goals", default=",".join(GOALS), help="which of: " + ", ".join(GOALS))
    parser.add_argument("--rounds", type=int, help="rounds of the watchers goal")
    parser.add_argument("--log-seconds", type=float, help="how long the big log takes to write")
    args = parser.parse_args()
    size = QUICK if args.quick else Size()
    if args.rounds:
        size.rounds = args.rounds
    if args.log_seconds:
        size.log_seconds = args.log_seconds
    for name in args.goals.split(","):
        with Timer() as t:
            GOALS[name](size)
        print(f"({name}: {t.seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
