"""The overview: workers (load, slots, resources held, heartbeats), queue, throughput, latest runs.

The page is rendered from the cluster watch the process holds (no call to the master per page), then
kept current by `/live/overview`. The user's token is checked once, with a cheap read, so a page
no one may read is not shown from the dashboard's own view.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from titan_runtime.dashboard.routes.common import client, dash


async def overview(request: Request) -> Response:
    d = dash(request)
    await client(request).list_workers()  # reads as the user: a token the master refuses signs out
    feed = d.cluster
    return d.renderer.page(
        request,
        "overview.html",
        nav="overview",
        live="/live/overview",
        summary=feed.summary(),
        autoscaler=feed.autoscaler,
        workers=feed.workers,
        at=feed.at,
        runs=feed.recent(),
        connected=feed.connected,
        error=feed.error,
    )


routes = [Route("/", overview)]
