"""Browser tests of the dashboard: Playwright (pytest-playwright) driving Debian's chromium
(/usr/bin/chromium, not a downloaded browser) against a live cluster and `titan-runtime dashboard`
running as a process of its own.

Playwright's sync API marks its event loop as the running one in this thread for as long as it is
started, which breaks `asyncio.run()` in any test after it: the `playwright` and `browser` fixtures
are overridden here to live for this package only (pytest-playwright's are session-wide). Each test
gets fresh browser contexts (its own cookies) from pytest-playwright's `new_context`, with its
--headed, --slowmo, --tracing, --screenshot and --video options.

Screenshots: `shoot(page, name)` saves a PNG into a temporary directory always, and into
docs/images/dashboard-NAME.png when TITAN_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.helpers import ProcessCluster
from titan_runtime.testing import CHROMIUM, CHROMIUM_ARGS, DashboardProcess

VIEWPORT = {"width": 1280, "height": 800}
#: How long a live change may take to show (the approvals and services polls run every 3 s; the
#: machine may be busy).
LIVE_TIMEOUT_MS = 30_000
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
UPDATE_SCREENSHOTS = "TITAN_UPDATE_SCREENSHOTS"

requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no {CHROMIUM}: the browser tests drive Debian's chromium (apt-get install chromium)",
)

expect.set_options(timeout=LIVE_TIMEOUT_MS)


# ---------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser(playwright: Playwright, browser_type_launch_args: dict[str, Any]) -> Iterator[Browser]:
    """Chromium, headless (unless --headed), launched from its path with the flags this machine
    needs. Playwright gives it a fresh temporary profile (user-data dir) of its own."""
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: apt-get install chromium")
    options: dict[str, Any] = {"headless": True, **browser_type_launch_args}
    options.pop("channel", None)  # the executable is given
    options["executable_path"] = str(CHROMIUM)
    options["args"] = [*CHROMIUM_ARGS, *options.get("args", [])]
    launched = playwright.chromium.launch(**options)
    yield launched
    launched.close()


@pytest.fixture(scope="package")
def browser_context_args() -> dict[str, Any]:
    return {"viewport": VIEWPORT, "locale": "en-GB", "timezone_id": "UTC"}


# -------------------------------------------------------------------------------------- dashboard


@pytest.fixture
def dashboard(cluster: ProcessCluster) -> Iterator[DashboardProcess]:
    """The dashboard for the cluster (a master and worker `w1`), its own token the cluster's."""
    running = DashboardProcess(cluster)
    try:
        yield running
    finally:
        running.stop()


# ------------------------------------------------------------------------------------ screenshots


@pytest.fixture(scope="package")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where every run's screenshots go: pytest's temporary directory (the last few runs' are
    kept; each path is printed in the test's captured output)."""
    return tmp_path_factory.mktemp("screenshots", numbered=False)


@pytest.fixture
def shoot(screenshot_dir: Path) -> Callable[[Page, str], Path]:
    def take(page: Page, name: str) -> Path:
        page.mouse.move(0, 0)  # no hover styles in the picture
        png = page.screenshot(type="png", animations="disabled", caret="hide")
        path = screenshot_dir / f"dashboard-{name}.png"
        path.write_bytes(png)
        print(f"screenshot: {path}")
        if os.environ.get(UPDATE_SCREENSHOTS) == "1":
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            (DOCS_IMAGES / path.name).write_bytes(png)
        return path

    return take


# ---------------------------------------------------------------------------------------- the UI


@dataclass
class UI:
    """Browser sessions against one dashboard: each `session` is a context of its own (cookies)."""

    dashboard: DashboardProcess
    new_context: Callable[..., BrowserContext]
    contexts: list[BrowserContext] = field(default_factory=list)
    #: Script errors and console errors (a CSP violation is one) in any page: none is expected.
    errors: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.dashboard.url

    def page(self) -> Page:
        """A page in a new context: signed out."""
        context = self.new_context()
        context.set_default_timeout(LIVE_TIMEOUT_MS)
        self.contexts.append(context)
        page = context.new_page()

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(f"{page.url}: console error: {message.text}")

        page.on("console", console)
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        return page

    def take_errors(self) -> list[str]:
        """The errors so far, which the test expected (they are no longer held against it)."""
        taken, self.errors[:] = list(self.errors), []
        return taken

    def sign_in(self, token: str, path: str = "/") -> Page:
        """A new session signed in with `token` through the sign-in form, on `path`."""
        page = self.page()
        page.goto(self.url + path)
        expect(page.get_by_test_id("signin-form")).to_be_visible()
        page.get_by_test_id("signin-token").fill(token)
        page.get_by_test_id("signin-submit").click()
        expect(page.get_by_test_id("signed-in-as")).to_be_visible()
        assert page.url == self.url + path, page.url
        return page

    def go(self, page: Page, path: str) -> None:
        response = page.goto(self.url + path)
        assert response is not None and response.status == 200, (path, response and response.status)


@pytest.fixture
def ui(dashboard: DashboardProcess, new_context: Callable[..., BrowserContext]) -> Iterator[UI]:
    """Asked for after the dashboard, so its browser contexts close before it is stopped. A test
    whose pages had a script or console error fails (in its teardown)."""
    ui = UI(dashboard, new_context)
    yield ui
    assert not ui.errors, "errors in the pages:\n" + "\n".join(ui.errors)
