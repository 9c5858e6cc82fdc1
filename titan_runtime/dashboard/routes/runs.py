"""Runs: the list (filtered, paged), a run (its DAG, timeline, jobs, cancel), and agent runs."""

from __future__ import annotations

import bisect
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from titan_runtime.client.records import JobRecord, RunRecord
from titan_runtime.dashboard.auth import describe
from titan_runtime.dashboard.feeds import RunFeed, job_json, run_json
from titan_runtime.dashboard.live import Busy
from titan_runtime.dashboard.render import RUN_STATES, TERMINAL_JOB_STATES
from titan_runtime.dashboard.routes.common import client, dash, done, param, user

PAGE_SIZE = 50
#: A run with more jobs than this is shown by its counts and the jobs that move, not as a graph.
MAX_GRAPH = 1500
#: Jobs listed for a run too big for a graph.
MOVING_JOBS = 500
#: Seconds a page waits for the run's shared watch to have read the run before reading it itself.
FEED_WAIT = 10.0


def _labels(text: str) -> tuple[dict[str, str], str]:
    """'k=v, k2=v2' as a dict, and what was wrong with it ('' when nothing)."""
    labels: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            return {}, f"{pair!r} is not KEY=VALUE"
        labels[key.strip()] = value.strip()
    return labels, ""


def _pattern(name: str) -> str:
    """A name filter: a shell pattern as given, or text to find anywhere in the name."""
    return name if any(c in name for c in "*?[") else f"*{name}*"


async def runs_page(request: Request) -> Response:
    q = request.query_params
    states = [s for s in q.getlist("state") if s in RUN_STATES]
    name = q.get("name", "").strip()[:200]
    label_text = q.get("label", "").strip()[:500]
    agent = q.get("agent", "").strip()[:256]
    before = q.get("before", "")
    before_seq = int(before) if before.isdigit() and len(before) < 19 else 0
    labels, error = _labels(label_text)
    found: list[RunRecord] = []
    if not error:
        found = await client(request).list_runs(
            limit=PAGE_SIZE + 1,
            agent_run_id=agent or None,
            states=states,
            name=_pattern(name) if name else None,
            labels=labels or None,
            before_seq=before_seq,
        )
    shown = found[:PAGE_SIZE]
    filters = [("state", s) for s in states] + [
        (k, v) for k, v in (("name", name), ("label", label_text), ("agent", agent)) if v
    ]

    def page_url(*cursor: tuple[str, str]) -> str:
        return "/runs" + (f"?{urlencode([*filters, *cursor])}" if filters or cursor else "")

    return dash(request).renderer.page(
        request,
        "runs.html",
        status=400 if error else 200,
        nav="runs",
        runs=shown,
        states=states,
        name=name,
        label=label_text,
        agent=agent,
        error=error,
        older=bool(before_seq),
        newest_url=page_url() if before_seq else "",
        next_url=page_url(("before", str(shown[-1].seq))) if len(found) > PAGE_SIZE else "",
    )


def in_order(jobs: list[JobRecord]) -> list[JobRecord]:
    """Parents before their children (then by id): the table reads as the graph runs."""
    by_id = {j.id: j for j in jobs}
    waiting = {j.id: sum(1 for p in j.parents if p in by_id) for j in jobs}
    children: dict[str, list[str]] = {}
    for job in jobs:
        for parent in job.parents:
            if parent in by_id:
                children.setdefault(parent, []).append(job.id)
    ready = sorted(i for i, n in waiting.items() if n == 0)
    ordered: list[JobRecord] = []
    while ready:
        job_id = ready.pop(0)
        ordered.append(by_id[job_id])
        for child in children.get(job_id, []):
            waiting[child] -= 1
            if waiting[child] == 0:
                bisect.insort(ready, child)
    seen = {j.id for j in ordered}
    return ordered + sorted((j for j in jobs if j.id not in seen), key=lambda j: j.id)  # a cycle: never


async def whole_run(request: Request, head: RunRecord) -> tuple[RunRecord, list[JobRecord]]:
    """A run and all its jobs, from the dashboard's one watch of the run (opened here if no page
    has it open: the page's stream, a moment later, joins the same watch), so twenty browsers on a
    run's page cost the master one read of it, not twenty. `head`, the run's header read with the
    user's token, says the user may read the run, and the watch must have seen what it saw.
    Without the watch (too many open, the master refused it, or it lags), the run is read with the
    user's token."""
    run_id = head.id
    d = dash(request)
    try:
        feed = d.hub.hold(f"run:{run_id}", lambda: RunFeed(d.client, run_id))
    except Busy:
        feed = None
    if isinstance(feed, RunFeed):
        found = await feed.whole(FEED_WAIT, head)
        if found is not None:
            return found
    run = await client(request).get_run(run_id)
    return run, run.jobs


async def run_page(request: Request) -> Response:
    run_id = param(request, "run_id")
    c = client(request)
    head = await c.get_run(run_id, jobs=[], limit=1)  # 404 for a bad id; its counts say how big it is
    total = sum(head.counts.values())
    graph = total <= MAX_GRAPH
    if graph:
        run, listed = await whole_run(request, head)
    else:
        moving = [s for s in ("RUNNING", "ASSIGNED", "READY", "FAILED", "UPSTREAM_FAILED")]
        run = await c.get_run(run_id, jobs=moving, limit=MOVING_JOBS)
        listed = run.jobs
    jobs = in_order(listed)
    data = {"run": run_json(run), "jobs": [job_json(j) for j in jobs], "graph": graph}
    return dash(request).renderer.page(
        request,
        "run.html",
        nav="runs",
        live=f"/live/runs/{run.id}" if graph else "/live/status",
        run=run,
        jobs=jobs,
        total=total,
        graph=graph,
        data=data,
        terminal=run.state in ("SUCCEEDED", "FAILED", "CANCELLED"),
        TERMINAL=TERMINAL_JOB_STATES,
    )


async def cancel_run(request: Request) -> Response:
    run_id = param(request, "run_id")
    who = describe(user(request).identity)
    cancelled = await client(request).cancel(run_id, reason=f"cancelled from the dashboard by {who}")
    return await done(request, f"Cancelled {len(cancelled)} job(s) of {run_id}.", f"/runs/{run_id}")


async def agent_runs_page(request: Request) -> Response:
    agent_runs = await client(request).list_agent_runs()
    agent_runs.sort(key=lambda a: -a.created_at)
    return dash(request).renderer.page(request, "agent_runs.html", nav="agent-runs", agent_runs=agent_runs)


async def agent_run_page(request: Request) -> Response:
    agent_run = await client(request).get_agent_run(param(request, "agent_run_id"))
    agent_run.runs.sort(key=lambda r: -r.created_at)
    return dash(request).renderer.page(request, "agent_run.html", nav="agent-runs", agent_run=agent_run)


routes = [
    Route("/runs", runs_page),
    Route("/runs/{run_id}", run_page),
    Route("/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
    Route("/agent-runs", agent_runs_page),
    Route("/agent-runs/{agent_run_id}", agent_run_page),
]
