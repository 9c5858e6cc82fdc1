"""A dashboard served from a thread of the test process, against a real master and worker, and a
browser-like HTTP client that signs in, keeps its cookies and posts forms with their CSRF token."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed: pip install -e '.[dashboard]'")
httpx = pytest.importorskip("httpx")

from tests.helpers import ProcessCluster  # noqa: E402
from titan_runtime.dashboard.server import RunningDashboard, start_in_thread  # noqa: E402
from titan_runtime.dashboard.settings import DashboardSettings  # noqa: E402

_NONCE = re.compile(r'name="nonce" value="([^"]+)"')
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """What a browser does over HTTP: cookies, the sign-in form, forms with their CSRF field,
    htmx requests with the CSRF header, and reading a server-sent event stream."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, follow_redirects=False, timeout=20)
        self.csrf = ""

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        response = self.http.get(path, **kwargs)  # type: ignore[arg-type]
        found = (
            _CSRF.search(response.text) if "text/html" in response.headers.get("content-type", "") else None
        )
        if found:
            self.csrf = found.group(1)
        return response

    def sign_in(self, token: str, next: str = "/") -> httpx.Response:
        form = self.get("/signin")
        nonce = _NONCE.search(form.text)
        assert nonce, form.text
        response = self.http.post("/signin", data={"token": token, "nonce": nonce.group(1), "next": next})
        if response.status_code == 303:
            self.get("/")  # the CSRF token of the new session
        return response

    def post(self, path: str, data: dict[str, str] | None = None, csrf: str | None = None) -> httpx.Response:
        """A form post carrying the session's CSRF token (or `csrf`: "" for none)."""
        fields = dict(data or {})
        token = self.csrf if csrf is None else csrf
        if token:
            fields["csrf_token"] = token
        return self.http.post(path, data=fields)

    def htmx_post(
        self, path: str, data: dict[str, str] | None = None, csrf: str | None = None
    ) -> httpx.Response:
        headers = {"HX-Request": "true"}
        token = self.csrf if csrf is None else csrf
        if token:
            headers["X-CSRF-Token"] = token
        return self.http.post(path, data=data or {}, headers=headers)

    def events(self, path: str, until: object, timeout: float = 30.0) -> list[tuple[str, str]]:
        """Read the event stream at `path` until `until(events so far)` is true; the events read,
        as (name, data). Fails past `timeout` (the stream pings every 15 s, so a read never hangs
        longer than the client's read timeout)."""
        deadline = time.monotonic() + timeout
        events: list[tuple[str, str]] = []
        with self.http.stream("GET", path, headers={"Accept": "text/event-stream"}) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            name, data = "message", []
            for line in response.iter_lines():
                if time.monotonic() > deadline:
                    raise AssertionError(f"no such event within {timeout}s; got {[e for e, _ in events]}")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif line == "":
                    if data:
                        events.append((name, "\n".join(data)))
                        if until(events):  # type: ignore[operator]
                            return events
                    name, data = "message", []
        raise AssertionError(f"the stream ended; got {[e for e, _ in events]}")


@dataclass
class Served:
    cluster: ProcessCluster
    running: RunningDashboard

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def app_state(self):  # type: ignore[no-untyped-def]
        return self.running.server.config.app.state.dashboard  # type: ignore[union-attr]

    def browser(self, token: str | None = None) -> Browser:
        browser = Browser(self.url)
        self._browsers.append(browser)
        if token is not None:
            response = browser.sign_in(token)
            assert response.status_code == 303, response.text
        return browser

    def __post_init__(self) -> None:
        self._browsers: list[Browser] = []

    def close(self) -> None:
        for browser in self._browsers:
            browser.close()
        self.running.stop()


@pytest.fixture
def served(cluster: ProcessCluster) -> Iterator[Served]:
    """The dashboard (its own token: the cluster's) for a master and one worker `w1`."""
    running = start_in_thread(DashboardSettings(address=cluster.address, token=cluster.token), port=0)
    served = Served(cluster, running)
    try:
        yield served
    finally:
        served.close()
