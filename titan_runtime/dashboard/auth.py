"""Who is signed in, and what they may do: server-side sessions, CSRF, read-only sessions.

A user signs in with a Titan token (the cluster token or a named one); the dashboard asks the master
who it is (`WhoAmI`) and keeps a session in this process: the token, the identity, and a client
that calls the master with that token, so each user's reads and actions hold to their own role.
The browser gets only a signed, random session id (HttpOnly, SameSite=Strict, Secure over https):
never the token, which a cookie would leak to anything that reads cookies or logs.

`AuthMiddleware` decides before any route runs, deny by default: without a session only the
sign-in page, static files and the health check answer; every unsafe request (POST...) must carry
the session's CSRF token (the form field `csrf_token`, or the `X-CSRF-Token` header htmx sends);
and a read-only session's writes are refused (403) whatever the route.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from titan_runtime.client.aio import AsyncTitanClient
from titan_runtime.client.tokens import IdentityRecord

SESSION_COOKIE = "titan_dashboard_session"
SIGNIN_COOKIE = "titan_dashboard_signin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
#: Credentials that may act (the master still decides per call: a submit token on its own runs).
WRITE_KINDS = frozenset({"cluster", "admin", "submit"})
#: Credentials that may sign in at all: a job's or a worker's is not a person's.
SIGNIN_KINDS = WRITE_KINDS | {"read"}
#: Sessions one process keeps; past it, the longest idle one is signed out.
MAX_SESSIONS = 1000
#: A form post is small; a bigger body is refused before it is read whole.
MAX_FORM_BYTES = 256 * 1024
#: Paths that answer without a session (relative to the root path).
PUBLIC_PATHS = frozenset({"/signin", "/healthz", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Seconds after which a session's token is checked with the master again (revoked, expired).
RECHECK_EVERY = 60.0


def describe(identity: IdentityRecord) -> str:
    """How a credential reads in the page header and in an approval's `by`."""
    if identity.kind == "cluster":
        return "the cluster token"
    return f"{identity.kind} token {identity.name}" if identity.name else f"a {identity.kind} token"


@dataclass(eq=False)
class Session:
    id: str
    token: str
    identity: IdentityRecord
    client: AsyncTitanClient
    csrf: str
    created: float
    last_seen: float
    checked: float
    flashes: list[tuple[str, str]] = field(default_factory=list)
    #: Live streams of this session (live.Subscription): ended when it ends (sign-out, expiry, revocation).
    streams: set[Any] = field(default_factory=set)

    @property
    def can_write(self) -> bool:
        return self.identity.kind in WRITE_KINDS

    @property
    def who(self) -> str:
        return describe(self.identity)

    def flash(self, message: str, level: str = "info") -> None:
        self.flashes.append((level, message))
        del self.flashes[:-5]

    def take_flashes(self) -> list[tuple[str, str]]:
        found, self.flashes = self.flashes, []
        return found


class SessionStore:
    """The signed-in sessions of this process, by id; the cookie holds the id signed with `secret`."""

    def __init__(
        self,
        secret: bytes,
        idle: float,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt="titan-dashboard-session")
        self._nonces = URLSafeTimedSerializer(secret, salt="titan-dashboard-signin")
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self.idle = idle
        self.max_age = max_age
        self._clock = clock

    def __len__(self) -> int:
        return len(self._sessions)

    def cookie_value(self, session: Session) -> str:
        return self._signer.dumps(session.id)

    def find(self, cookie: str | None) -> Session | None:
        """The live session a cookie names (and it is touched), or None: unsigned, unknown, expired."""
        if not cookie:
            return None
        try:
            session_id = self._signer.loads(cookie, max_age=self.max_age)
        except BadSignature:  # SignatureExpired is one
            return None
        session = self._sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            return None
        if self.expired(session):
            self.end(session)
            return None
        session.last_seen = self._clock()
        self._sessions.move_to_end(session.id)
        return session

    def add(self, token: str, identity: IdentityRecord, client: AsyncTitanClient) -> Session:
        """A new session (a new random id at every sign-in: no fixation)."""
        now = self._clock()
        session = Session(
            id=secrets.token_urlsafe(32),
            token=token,
            identity=identity,
            client=client,
            csrf=secrets.token_urlsafe(32),
            created=now,
            last_seen=now,
            checked=now,
        )
        self._sessions[session.id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self.end(next(iter(self._sessions.values())))
        return session

    def end(self, session: Session) -> None:
        """Sign out: forget it, end its live streams, close its client."""
        if self._sessions.pop(session.id, None) is None:
            return
        for stream in list(session.streams):
            stream.end()
        _close_later(session.client)

    def close_all(self) -> None:
        for session in list(self._sessions.values()):
            self.end(session)

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def expired(self, session: Session) -> bool:
        now = self._clock()
        return now - session.last_seen > self.idle or now - session.created > self.max_age

    def due_for_check(self, session: Session) -> bool:
        return self._clock() - session.checked > RECHECK_EVERY

    def checked(self, session: Session) -> None:
        session.checked = self._clock()

    # -------------------------------------------------------------- the sign-in form's nonce

    def new_signin_nonce(self) -> tuple[str, str]:
        """(the form's value, the cookie's): the cookie signs it, so a page elsewhere cannot post a
        sign-in form of its own making (login CSRF); SameSite=Strict keeps the cookie off it anyway."""
        nonce = secrets.token_urlsafe(24)
        return nonce, self._nonces.dumps(nonce)

    def signin_nonce_ok(self, form_value: str, cookie: str | None) -> bool:
        if not cookie or not form_value:
            return False
        try:
            expected = self._nonces.loads(cookie, max_age=3600)
        except BadSignature:
            return False
        return isinstance(expected, str) and hmac.compare_digest(expected, form_value)


def _close_later(client: AsyncTitanClient) -> None:
    """Close a client's channel on the running loop (or drop it when there is none: tests, exit)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    task = loop.create_task(client.close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[None]] = set()


class SigninThrottle:
    """Wrong tokens from one address: after `free` in a row, each next try waits (1 s doubling to
    `cap`) and is refused (429) until then. The master slows wrong tokens down too, but it sees
    only the dashboard's address, so the dashboard tells guessers apart itself."""

    def __init__(self, free: int = 5, cap: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.free = free
        self.cap = cap
        self._clock = clock
        self._failures: dict[str, tuple[int, float]] = {}

    def retry_in(self, peer: str) -> float:
        """Seconds until `peer` may try again (0: now)."""
        _, until = self._failures.get(peer, (0, 0.0))
        return max(0.0, until - self._clock())

    def failed(self, peer: str) -> None:
        if len(self._failures) > 10_000:
            self._failures.clear()
        count, _ = self._failures.get(peer, (0, 0.0))
        count += 1
        wait = min(self.cap, 2.0 ** (count - self.free - 1)) if count > self.free else 0.0
        self._failures[peer] = (count, self._clock() + wait)

    def succeeded(self, peer: str) -> None:
        self._failures.pop(peer, None)


def relative_path(scope: Scope) -> str:
    """The request's path below the root path (uvicorn and Starlette may or may not prefix it)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def safe_next(value: str | None) -> str:
    """A place to go back to after signing in: a path of this site only (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def session_of(request: Request) -> Session:
    """The request's session (AuthMiddleware put it there; routes run only with one)."""
    return request.scope["titan.session"]  # type: ignore[no-any-return]


#: How the middleware answers a refusal: (the request, status, title, message) -> a page.
Refuse = Callable[[Request, int, str, str], Awaitable[Response]]


class AuthMiddleware:
    """Session, CSRF, origin and read-only checks for every request, before any route."""

    def __init__(self, app: ASGIApp, sessions: SessionStore, refuse: Refuse) -> None:
        self.app = app
        self.sessions = sessions
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = relative_path(scope)
        if is_public(path):
            await self.app(scope, receive, send)
            return
        session = self.sessions.find(request.cookies.get(SESSION_COOKIE))
        if session is None:
            await self._no_session(request, path)(scope, receive, send)
            return
        scope["titan.session"] = session
        if request.method in UNSAFE_METHODS:
            refused, receive = await self._check_write(request, session, path, receive)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _no_session(self, request: Request, path: str) -> Response:
        root = request.scope.get("root_path", "")
        signin = f"{root}/signin"
        htmx = request.headers.get("hx-request") == "true"
        if request.method in ("GET", "HEAD") and not htmx and not path.startswith("/live/"):
            target = path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{signin}?next={quote(target, safe='')}", status_code=303)
        headers = {"HX-Redirect": signin} if htmx else {}
        return PlainTextResponse("sign in first", status_code=401, headers=headers)

    async def _check_write(
        self, request: Request, session: Session, path: str, receive: Receive
    ) -> tuple[Response | None, Receive]:
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return await self.refuse(request, 403, "Refused", "a request from another site"), receive
        sent = request.headers.get(CSRF_HEADER)
        if sent is None:
            body, receive = await _read_body(receive)
            if body is None:
                return await self.refuse(request, 413, "Too large", "the form is too large"), receive
            if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                sent = (parse_qs(body.decode("latin-1")).get(CSRF_FIELD) or [None])[0]
        if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            message = "the form's CSRF token is missing or wrong: reload the page and try again"
            return await self.refuse(request, 403, "Refused", message), receive
        if not session.can_write and path != "/signout":
            message = f"signed in with {session.who}, which is read-only"
            return await self.refuse(request, 403, "Read-only", message), receive
        return None, receive


async def _read_body(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole request body (None past MAX_FORM_BYTES), and a `receive` that hands it on again."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None, receive
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay
