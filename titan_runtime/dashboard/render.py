"""Pages and fragments: the Jinja2 environment, its filters, and the error pages.

Fragments that go out over live streams are rendered here too, outside any request (once for
every browser that gets them): their URLs come from the root path given at start, not a request.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.templating import Jinja2Templates

from titan_runtime.dashboard.auth import Session

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

#: Jobs that will not change again (a stopped service among them).
TERMINAL_JOB_STATES = ("SUCCEEDED", "FAILED", "CANCELLED", "UPSTREAM_FAILED", "SKIPPED", "STOPPED")
RUN_STATES = ("RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
JOB_STATES = (
    "PENDING", "READY", "ASSIGNED", "RUNNING", "WAITING_APPROVAL",
    "STARTING", "HEALTHY", "RESTARTING", *TERMINAL_JOB_STATES,
)  # fmt: skip


def ago(ts: float | None, now: float | None = None) -> str:
    """'12s ago', '3m ago', '5h ago', '2d ago'; '' for no time."""
    if not ts:
        return ""
    seconds = max(0.0, (now if now is not None else time.time()) - ts)
    return f"{duration(seconds)} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def when(ts: float | None) -> str:
    """An absolute time, local to the dashboard's host (the title of a relative one)."""
    if not ts:
        return ""
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def span(start: float | None, end: float | None, now: float | None = None) -> str:
    """How long something ran (until now when it has not ended)."""
    if not start:
        return ""
    return duration((end or (now if now is not None else time.time())) - start)


def size(num: float | None) -> str:
    """Bytes as B, KiB, MiB, GiB."""
    value = float(num or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def mib(megabytes: float | None) -> str:
    return size((megabytes or 0) * 1024 * 1024)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


class Renderer:
    """The templates, with what every page and fragment shares."""

    def __init__(self, root_path: str = "") -> None:
        self.root_path = root_path.rstrip("/")
        self.templates = Jinja2Templates(directory=str(TEMPLATES))
        env = self.templates.env
        env.globals.update(
            u=self.url,
            RUN_STATES=RUN_STATES,
            JOB_STATES=JOB_STATES,
            TERMINAL_JOB_STATES=TERMINAL_JOB_STATES,
            ago=ago,
            span=span,
        )
        env.filters.update(
            ago=ago, duration=duration, when=when, span=span, size=size, mib=mib, pretty_json=pretty_json
        )

    def url(self, path: str) -> str:
        return self.root_path + path

    def page(self, request: Request, template: str, /, status: int = 200, **context: Any) -> HTMLResponse:
        session: Session | None = request.scope.get("titan.session")
        context.setdefault("live", "/live/status")
        return self.templates.TemplateResponse(
            request,
            template,
            {
                "session": session,
                "csrf": session.csrf if session else "",
                "can_write": bool(session and session.can_write),
                "flashes": session.take_flashes() if session else [],
                "path": request.url.path,
                "now": time.time(),
                **context,
            },
            status_code=status,
        )

    def fragment(self, template: str, /, **context: Any) -> str:
        """A template rendered outside any request (a live stream's fragment)."""
        return self.templates.env.get_template(template).render(now=time.time(), **context)

    async def error(self, request: Request, status: int, title: str, message: str) -> Response:
        """An error page; for an htmx request, a message for the page's flash area."""
        if request.headers.get("hx-request") == "true":
            html = self.fragment("partials/flash.html", flashes=[("error", f"{title}: {message}")])
            return HTMLResponse(html, status_code=status, headers={"HX-Retarget": "#flash"})
        return self.page(request, "error.html", status=status, title=title, message=message, code=status)
