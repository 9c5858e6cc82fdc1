"""The autoscaler: its pools (sizes, what they wait for, why they cannot grow) and its decisions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from titan_runtime.dashboard.routes.common import client, dash

EVENTS = 200


async def autoscaler_page(request: Request) -> Response:
    c = client(request)
    pool = request.query_params.get("pool", "").strip()[:128]
    status = await c.autoscaler_status()
    events = await c.autoscaler_events(limit=EVENTS, pool=pool) if status.enabled else []
    return dash(request).renderer.page(
        request,
        "autoscaler.html",
        nav="autoscaler",
        scaler=status,
        events=list(reversed(events)),
        pool=pool,
    )


routes = [Route("/autoscaler", autoscaler_page)]
