"""Approvals: the gates waiting for a person (approve or reject, with a comment) and those decided.

The list is kept current by one shared poll while anyone watches (the master has no stream of
gates): a new gate shows up within a few seconds in every browser, at one call for all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from titan_runtime.dashboard.auth import describe
from titan_runtime.dashboard.feeds import PollFeed
from titan_runtime.dashboard.routes.common import client, dash, done, param, user

if TYPE_CHECKING:
    from titan_runtime.dashboard.state import Dashboard

MAX_COMMENT = 2000


def approvals_feed(d: Dashboard) -> PollFeed:
    def render(gates: Any, writer: bool) -> str:
        return d.renderer.fragment("partials/approvals.html", gates=gates, can_write=writer)

    return PollFeed("poll:approvals", "approvals", d.client.list_approvals, render)


async def approvals_page(request: Request) -> Response:
    gates = await client(request).list_approvals()
    return dash(request).renderer.page(
        request, "approvals.html", nav="approvals", live="/live/approvals", gates=gates
    )


async def decide(request: Request) -> Response:
    run_id, job_id = param(request, "run_id"), param(request, "job_id")
    form = await request.form()
    decision = form.get("decision")
    if decision not in ("approve", "reject"):
        raise HTTPException(400, "decide with approve or reject")
    comment = str(form.get("comment") or "")[:MAX_COMMENT]
    by = f"{describe(user(request).identity)}, in the dashboard"
    c = client(request)
    if decision == "approve":
        await c.approve(run_id, job_id, comment=comment, by=by)
    else:
        await c.reject(run_id, job_id, comment=comment, by=by)
    verb = "Approved" if decision == "approve" else "Rejected"
    return await done(request, f"{verb} {run_id}/{job_id}.", "/approvals")


routes = [
    Route("/approvals", approvals_page),
    Route("/approvals/{run_id}/{job_id}/decide", decide, methods=["POST"]),
]
