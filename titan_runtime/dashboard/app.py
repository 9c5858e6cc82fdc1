"""`create_app`: the dashboard as an ASGI app (Starlette), its middleware and its error pages."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from titan_runtime.client.errors import (
    Conflict,
    InvalidJob,
    JobNotFound,
    PermissionDenied,
    ResourceExhausted,
    TitanConnectionError,
    TitanError,
    Unauthenticated,
)
from titan_runtime.dashboard.auth import SESSION_COOKIE, AuthMiddleware
from titan_runtime.dashboard.render import STATIC
from titan_runtime.dashboard.routes import all_routes
from titan_runtime.dashboard.settings import DashboardSettings
from titan_runtime.dashboard.state import Dashboard

#: What every answer says about itself: scripts from this site only (no inline script runs, so an
#: id or a log line that slips through escaping cannot), never framed, no sniffing, no referrer out.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: dict) -> None:  # type: ignore[type-arg]
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, sending)


def create_app(settings: DashboardSettings | None = None) -> Starlette:
    """The dashboard for `settings` (default: the master and token every client finds). Its own
    client and the cluster watch start with the app's lifespan, inside the serving loop."""
    dashboard = Dashboard(settings or DashboardSettings())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await dashboard.start()
        try:
            yield
        finally:
            await dashboard.stop()

    renderer = dashboard.renderer

    async def not_found(request: Request, exc: Exception) -> Response:
        return await renderer.error(request, 404, "Not found", _message(exc, "there is nothing here"))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return await not_found(request, exc)
        return await renderer.error(request, exc.status_code, "Error", str(exc.detail))

    async def titan_error(request: Request, exc: Exception) -> Response:
        """The master's refusals as pages: each with the status that says the same."""
        if isinstance(exc, Unauthenticated):
            return _signed_out(request, dashboard)
        for kind, status, title in (
            (JobNotFound, 404, "Not found"),
            (PermissionDenied, 403, "Not allowed"),
            (InvalidJob, 400, "Refused"),
            (Conflict, 409, "Conflict"),
            (ResourceExhausted, 429, "Over a limit"),
            (TitanConnectionError, 503, "The master cannot be reached"),
        ):
            if isinstance(exc, kind):
                return await renderer.error(request, status, title, str(exc))
        return await renderer.error(request, 502, "The master refused", str(exc))

    app = Starlette(
        routes=[*all_routes(), Mount("/static", StaticFiles(directory=str(STATIC)), name="static")],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(AuthMiddleware, sessions=dashboard.sessions, refuse=renderer.error),
        ],
        exception_handlers={HTTPException: http_error, TitanError: titan_error, 404: not_found},
        lifespan=lifespan,
    )
    app.state.dashboard = dashboard
    return app


def _message(exc: Exception, default: str) -> str:
    detail = getattr(exc, "detail", None)
    if isinstance(exc, JobNotFound):
        return str(exc)
    return default if not detail or detail == "Not Found" else str(detail)


def _signed_out(request: Request, dashboard: Dashboard) -> Response:
    """The master no longer takes the user's token (revoked, expired): the session ends."""
    session = request.scope.get("titan.session")
    if session is not None:
        dashboard.sessions.end(session)
    signin = dashboard.renderer.url("/signin?expired=1")
    if request.headers.get("hx-request") == "true":
        return PlainTextResponse("sign in again", status_code=401, headers={"HX-Redirect": signin})
    response = RedirectResponse(signin, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=dashboard.renderer.root_path or "/")
    return response
