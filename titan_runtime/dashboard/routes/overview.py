"""The overview: workers (load, slots, resources held, heartbeats), queue, throughput, latest runs.

The workers are read with the user's token (one call per page, as every page read: a revoked token
ends its session here); the rest comes from the cluster watch the process holds, and
`/live/overview` keeps it all current.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from titan_runtime.dashboard.routes.common import client, dash


async def overview(request: Request) -> Response:
    d = dash(request)
    workers = await client(request).list_workers()  # with the user's token, as every page read
    feed = d.cluster
    return d.renderer.page(
        request,
        "overview.html",
        nav="overview",
        live="/live/overview",
        summary=feed.summary(),
        autoscaler=feed.autoscaler,
        workers=workers,
        at=feed.at,
        runs=feed.recent(),
        connected=feed.connected,
        error=feed.error,
    )


routes = [Route("/", overview)]
