"""Signing in with a Titan token, and out; the health check."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from titan_runtime.client.errors import TitanConnectionError, TitanError, Unauthenticated
from titan_runtime.dashboard.auth import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    SIGNIN_KINDS,
    safe_next,
)
from titan_runtime.dashboard.routes.common import dash

#: Longest token accepted (Titan's are 43 characters; this only keeps junk off the master).
MAX_TOKEN = 1024


def _cookie_path(request: Request) -> str:
    return dash(request).renderer.root_path or "/"


def _secure(request: Request) -> bool:
    """Over https (directly, or behind a proxy uvicorn trusts): the cookie is sent over https only."""
    return request.url.scheme == "https"


async def signin_page(request: Request) -> Response:
    d = dash(request)
    target = safe_next(request.query_params.get("next"))
    if d.sessions.find(request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse(d.renderer.url(target), status_code=303)
    return _form(request, target, "", 200)


def _form(request: Request, target: str, error: str, status: int) -> Response:
    d = dash(request)
    nonce, signed = d.sessions.new_signin_nonce()
    response = d.renderer.page(
        request,
        "signin.html",
        status=status,
        nonce=nonce,
        next=target,
        error=error,
        expired=request.query_params.get("expired") == "1",
        address=d.address,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        signed,
        max_age=3600,
        path=_cookie_path(request),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


async def signin(request: Request) -> Response:
    d = dash(request)
    form = await request.form()
    target = safe_next(str(form.get("next") or ""))
    if not d.sessions.signin_nonce_ok(str(form.get("nonce") or ""), request.cookies.get(SIGNIN_COOKIE)):
        return _form(request, target, "The sign-in form had expired: sign in again.", 403)
    peer = request.client.host if request.client else "?"
    wait = d.throttle.retry_in(peer)
    if wait > 0:
        return _form(request, target, f"Too many wrong tokens: try again in {wait:.0f}s.", 429)
    token = str(form.get("token") or "").strip()
    if not token or len(token) > MAX_TOKEN or not token.isprintable():
        return _form(request, target, "Enter a Titan token.", 400)
    client = d.user_client(token)
    try:
        identity = await client.whoami()
    except Unauthenticated:
        await client.close()
        d.throttle.failed(peer)
        return _form(request, target, "The master refused this token (wrong, revoked or expired).", 401)
    except TitanConnectionError as exc:
        await client.close()
        return _form(request, target, f"The master cannot be reached: {exc}", 503)
    except TitanError as exc:
        await client.close()
        return _form(request, target, f"The master refused the sign-in: {exc}", 403)
    if identity.kind not in SIGNIN_KINDS:
        await client.close()
        return _form(
            request, target, f"A {identity.kind} credential cannot sign in: use a person's token.", 403
        )
    d.throttle.succeeded(peer)
    session = d.sessions.add(token, identity, client)
    response = RedirectResponse(d.renderer.url(target), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        d.sessions.cookie_value(session),
        path=_cookie_path(request),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(SIGNIN_COOKIE, path=_cookie_path(request))
    return response


async def signout(request: Request) -> Response:
    d = dash(request)
    session = d.sessions.find(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        d.sessions.end(session)
    response = RedirectResponse(d.renderer.url("/signin"), status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=_cookie_path(request))
    if request.headers.get("hx-request") == "true":
        response.headers["HX-Redirect"] = d.renderer.url("/signin")
    return response


async def healthz(request: Request) -> Response:
    """For whoever started the dashboard (`up`) to wait for it: answers once it serves."""
    return PlainTextResponse("ok")


routes = [
    Route("/signin", signin_page, methods=["GET"]),
    Route("/signin", signin, methods=["POST"]),
    Route("/signout", signout, methods=["POST"]),
    Route("/healthz", healthz, methods=["GET"]),
]
