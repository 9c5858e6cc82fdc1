"""What the route modules share: the process's state, the user's client, answers after an action."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from titan_runtime.client.aio import AsyncTitanClient
from titan_runtime.dashboard.auth import Session, safe_next, session_of
from titan_runtime.dashboard.state import Dashboard

#: Path parameters are ids: the master checks them, the dashboard only keeps them to a sane size.
MAX_ID = 256


def dash(request: Request) -> Dashboard:
    return request.app.state.dashboard  # type: ignore[no-any-return]


def user(request: Request) -> Session:
    return session_of(request)


def client(request: Request) -> AsyncTitanClient:
    """The signed-in user's client: every page read and action goes through the user's own token."""
    return session_of(request).client


def param(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    if not value or len(value) > MAX_ID:
        raise HTTPException(404)
    return value


async def recheck(request: Request) -> None:
    """For a page read from the dashboard's own view (no call with the user's token of its own): ask
    the master about the user's token now and then, so a revoked one ends its session here too."""
    d, session = dash(request), user(request)
    if d.sessions.due_for_check(session):
        await session.client.whoami()  # Unauthenticated: the app signs the session out
        d.sessions.checked(session)


async def done(request: Request, message: str, back: str) -> Response:
    """After an action: an htmx request gets the message for the page's flash area; a form post is
    sent back to a page of this site (its `next` field, else `back`) with the message flashed."""
    d = dash(request)
    if request.headers.get("hx-request") == "true":
        html = d.renderer.fragment("partials/flash.html", flashes=[("info", message)])
        return HTMLResponse(html, headers={"HX-Retarget": "#flash"})
    form = await request.form()
    target = safe_next(str(form.get("next") or "")) if form.get("next") else back
    user(request).flash(message)
    return RedirectResponse(d.renderer.url(target), status_code=303)
