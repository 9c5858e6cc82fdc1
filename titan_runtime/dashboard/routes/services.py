"""Services: every instance with its endpoint, health and restarts; restart and stop.

Kept current by one shared poll while anyone watches (services are not in the watch stream).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from titan_runtime.dashboard.feeds import PollFeed
from titan_runtime.dashboard.routes.common import client, dash, done, param

if TYPE_CHECKING:
    from titan_runtime.dashboard.state import Dashboard


def services_feed(d: Dashboard) -> PollFeed:
    def render(services: Any, writer: bool) -> str:
        return d.renderer.fragment("partials/services.html", services=services, can_write=writer)

    async def fetch() -> list[Any]:
        return by_service(await d.client.list_services())

    return PollFeed("poll:services", "services", fetch, render)


def by_service(services: list[Any]) -> list[Any]:
    """Instances of one service together (their buttons go on the first)."""
    return sorted(services, key=lambda s: (s.service, s.id))


async def services_page(request: Request) -> Response:
    ended = request.query_params.get("ended") == "1"
    services = by_service(await client(request).list_services(include_ended=ended))
    return dash(request).renderer.page(
        request,
        "services.html",
        nav="services",
        live="/live/status" if ended else "/live/services",
        services=services,
        ended=ended,
    )


async def service_page(request: Request) -> Response:
    service_id = param(request, "service_id")
    instances = by_service(await client(request).list_services(service_id, include_ended=True))
    if not instances:
        raise HTTPException(404, f"no service {service_id!r}")
    return dash(request).renderer.page(
        request, "service.html", nav="services", service_id=service_id, services=instances
    )


async def stop(request: Request) -> Response:
    service_id = param(request, "service_id")
    stopped = await client(request).stop_service(service_id)
    return await done(request, f"Stopping {', '.join(stopped) or service_id}.", f"/services/{service_id}")


async def restart(request: Request) -> Response:
    service_id = param(request, "service_id")
    restarted = await client(request).restart_service(service_id)
    return await done(request, f"Restarting {', '.join(restarted) or service_id}.", f"/services/{service_id}")


routes = [
    Route("/services", services_page),
    Route("/services/{service_id}", service_page),
    Route("/services/{service_id}/stop", stop, methods=["POST"]),
    Route("/services/{service_id}/restart", restart, methods=["POST"]),
]
