"""`titan-runtime dashboard` as a command: its options, its refusals, and a real process serving
(the entry point `titan-runtime up` will start: `python -m titan_runtime dashboard ...`)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from tests.helpers import ProcessCluster, wait_until

pytest.importorskip("starlette", reason="the dashboard extra is not installed: pip install -e '.[dashboard]'")
httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.integration


def test_help_and_refusals(cluster: ProcessCluster) -> None:
    shown = cluster.cli("dashboard", "--help")
    assert shown.returncode == 0 and "--bind" in shown.stdout and "--https-cert" in shown.stdout
    exposed = cluster.cli("dashboard", "--bind", "0.0.0.0", "--port", "0")
    assert exposed.returncode == 1
    assert exposed.stderr.startswith(
        "titan-runtime: error: refusing to serve the dashboard on 0.0.0.0 without TLS"
    )
    wrong = cluster.cli("dashboard", "--port", "0", "--token", "not-the-token")
    assert wrong.returncode == 1 and wrong.stderr.startswith("titan-runtime: error:")
    assert len(wrong.stderr.strip().splitlines()) == 1
    path = cluster.cli("dashboard", "--root-path", "titan/")
    assert path.returncode == 2 and "--root-path" in path.stderr


def test_the_command_serves_until_told_to_stop(cluster: ProcessCluster) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "titan_runtime", "dashboard", "--port", "0", "--root-path", "/titan"],
        env=cluster.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        # The proxy in front serves it at /titan/ and strips the prefix: links and cookies carry it.
        found = re.search(r"Titan dashboard on (http://127\.0\.0\.1:\d+/) \(master ", line)
        assert found, line
        url = found.group(1)
        with httpx.Client(base_url=url, timeout=10) as http:
            wait_until(lambda: http.get("healthz").status_code == 200, 20, what="the dashboard to serve")
            page = http.get("", follow_redirects=False)
            assert page.status_code == 303 and page.headers["location"] == "/titan/signin?next=%2F"
            signin = http.get("signin")
            assert 'action="/titan/signin"' in signin.text and "/titan/static/dashboard.css" in signin.text
            cookie = signin.headers["set-cookie"]
            assert "Path=/titan" in cookie
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
