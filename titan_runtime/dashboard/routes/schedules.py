"""Schedules and saved DAGs: what runs when, what is kept to run; submit a saved DAG, delete a schedule."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from titan_runtime.dashboard.routes.common import client, dash, done, param, user


async def schedules_page(request: Request) -> Response:
    c = client(request)
    schedules = await c.list_schedules()
    dags = await c.list_saved_dags()
    return dash(request).renderer.page(
        request, "schedules.html", nav="schedules", schedules=schedules, dags=dags
    )


async def dag_page(request: Request) -> Response:
    name = param(request, "name")
    c = client(request)
    dag = await c.get_saved_dag(name)
    schedules = [s for s in await c.list_schedules() if s.dag == name]
    return dash(request).renderer.page(
        request, "dag.html", nav="schedules", dag=dag, jobs=dag.get("jobs", []), schedules=schedules
    )


async def submit_dag(request: Request) -> Response:
    name = param(request, "name")
    run = await client(request).submit_saved_dag(name)
    user(request).flash(f"Submitted {name} as run {run}.")
    d = dash(request)
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": d.renderer.url(f"/runs/{run}")})
    return RedirectResponse(d.renderer.url(f"/runs/{run}"), status_code=303)


async def delete_schedule(request: Request) -> Response:
    name = param(request, "name")
    await client(request).delete_schedule(name)
    return await done(request, f"Deleted the schedule {name}.", "/schedules")


routes = [
    Route("/schedules", schedules_page),
    Route("/schedules/{name}/delete", delete_schedule, methods=["POST"]),
    Route("/dags/{name}", dag_page),
    Route("/dags/{name}/submit", submit_dag, methods=["POST"]),
]
