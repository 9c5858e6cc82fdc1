"""The pages' live streams (server-sent events), each fed by the hub's shared topics.

A page opens one stream, `/live/...`; what it carries comes from topics every browser shares (the
cluster watch, a run's watch, a job's log tail, a shared poll), so a hundred browsers on a run's
page cost the master one watch. Opening a stream checks, with the user's own token, that what it
is about exists and may be read (a bad id is a 404, not an empty stream).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from titan_runtime.client.errors import Unauthenticated
from titan_runtime.dashboard.feeds import LogFeed, RunFeed
from titan_runtime.dashboard.live import Busy, Message, Subscription, Topic, event_stream
from titan_runtime.dashboard.routes.common import client, dash, param, recheck, user
from titan_runtime.dashboard.routes.runs import MAX_GRAPH

Join = tuple[str, Callable[[], Topic]]


async def _stream(request: Request, events: tuple[str, ...], joins: list[Join]) -> Response:
    d, session = dash(request), user(request)
    try:
        await recheck(request)  # a revoked or expired token ends its live views too
    except Unauthenticated:
        d.sessions.end(session)
        return PlainTextResponse("sign in again", status_code=401)
    sub = Subscription(session.can_write, events)

    def join() -> None:
        session.streams.add(sub)
        for key, make in [("cluster", lambda: d.cluster), *joins]:
            try:
                d.hub.join(sub, key, make)
            except Busy as exc:
                sub.deliver([Message.json("trouble", {"error": f"{exc}: reload later"})])

    def leave() -> None:
        d.hub.leave(sub)
        session.streams.discard(sub)

    return StreamingResponse(
        event_stream(sub, join, leave),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def status(request: Request) -> Response:
    """Any page: whether the master is reachable, and the runs' states (badges that change live)."""
    return await _stream(request, ("status", "runs"), [])


async def overview(request: Request) -> Response:
    return await _stream(
        request, ("status", "runs", "summary", "workers", "recent", "load", "loadhistory"), []
    )


async def run(request: Request) -> Response:
    run_id = param(request, "run_id")
    await client(request).get_run(run_id, jobs=[], limit=1)  # exists, and the user may read it
    c = dash(request).client
    return await _stream(
        request, ("status", "run", "trouble"), [(f"run:{run_id}", lambda: RunFeed(c, run_id))]
    )


async def job(request: Request) -> Response:
    """A job's log tail, and its state from its run's watch (unless the run is too big to watch
    whole: then the page's state is as read, and the log tail still runs)."""
    run_id, job_id = param(request, "run_id"), param(request, "job_id")
    ref = f"{run_id}/{job_id}"
    user_client = client(request)
    await user_client.get_job(ref)
    head = await user_client.get_run(run_id, jobs=[], limit=1)
    c = dash(request).client
    joins: list[Join] = [(f"log:{ref}", lambda: LogFeed(c, ref))]
    if sum(head.counts.values()) <= MAX_GRAPH:
        joins.append((f"run:{run_id}", lambda: RunFeed(c, run_id)))
    return await _stream(request, ("status", "run", "lines", "eof", "trouble"), joins)


async def services(request: Request) -> Response:
    from titan_runtime.dashboard.routes.services import services_feed

    d = dash(request)
    return await _stream(request, ("status", "services"), [("poll:services", lambda: services_feed(d))])


async def approvals(request: Request) -> Response:
    from titan_runtime.dashboard.routes.approvals import approvals_feed

    d = dash(request)
    return await _stream(request, ("status", "approvals"), [("poll:approvals", lambda: approvals_feed(d))])


routes = [
    Route("/live/status", status),
    Route("/live/overview", overview),
    Route("/live/runs/{run_id}", run),
    Route("/live/jobs/{run_id}/{job_id}", job),
    Route("/live/services", services),
    Route("/live/approvals", approvals),
]
