"""The dashboard's routes, one small module per area."""

from __future__ import annotations

from starlette.routing import BaseRoute


def all_routes() -> list[BaseRoute]:
    from titan_runtime.dashboard.routes import (
        approvals,
        autoscaler,
        overview,
        runs,
        schedules,
        services,
        signin,
        stream,
    )
    from titan_runtime.dashboard.routes import jobs as job_pages

    return [
        *signin.routes,
        *overview.routes,
        *runs.routes,
        *job_pages.routes,
        *services.routes,
        *approvals.routes,
        *schedules.routes,
        *autoscaler.routes,
        *stream.routes,
    ]
