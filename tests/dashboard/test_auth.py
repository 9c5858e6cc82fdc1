"""Who may see and do what in the dashboard: sessions, sign-in and out, CSRF on every write,
read-only sessions, roles held by the master, and the headers every answer carries."""

from __future__ import annotations

import re

import pytest

from tests.dashboard.conftest import Served
from tests.helpers import wait_until
from titan_runtime import TitanJob

pytestmark = pytest.mark.integration

#: Every write the dashboard has (POST routes, the sign-in's own form apart), with ids to fill in.
WRITES = [
    "/runs/{run}/cancel",
    "/jobs/{run}/sleeper/cancel",
    "/services/svc/stop",
    "/services/svc/restart",
    "/approvals/{run}/sleeper/decide",
    "/schedules/nightly/delete",
    "/dags/nightly/submit",
]


def post_routes(served: Served) -> set[str]:
    app = served.running.server.config.app
    return {r.path for r in app.routes if "POST" in (getattr(r, "methods", None) or ())}


def sleeper(served: Served) -> str:
    """A run that goes on until the cluster stops: what a refused write must leave alone."""
    return served.cluster.client.submit_dag("sleepy", [TitanJob("sleeper", command=["sleep", "300"])])


def test_the_write_list_is_every_post_route(served: Served) -> None:
    templates = {re.sub(r"\{[^}]+\}", "{}", p) for p in post_routes(served)} - {"/signin", "/signout"}
    listed = {re.sub(r"/(r-[^/]+|\{run\}|sleeper|svc|nightly)(?=/)", "/{}", p) for p in WRITES}
    assert listed == templates


def test_nothing_but_sign_in_static_and_health_answers_without_a_session(served: Served) -> None:
    anonymous = served.browser()
    for path in ("/", "/runs", "/runs/r-1", "/jobs/r-1/a", "/services", "/approvals", "/schedules",
                 "/dags/x", "/autoscaler", "/agent-runs", "/agent-runs/a", "/services/s", "/jobs/r-1/a/log",
                 "/nothing-here"):  # fmt: skip
        response = anonymous.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/signin?next="), path
    htmx = anonymous.http.get("/runs", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"] == "/signin"
    for path in ("/live/status", "/live/overview", "/live/runs/r-1", "/live/jobs/r-1/a", "/live/services",
                 "/live/approvals"):  # fmt: skip
        assert anonymous.get(path).status_code == 401, path
    for path in WRITES:
        assert anonymous.post(path.format(run="r-1"), csrf="x").status_code == 401, path
    assert anonymous.get("/signin").status_code == 200
    assert anonymous.get("/healthz").text == "ok"
    assert anonymous.get("/static/dashboard.css").status_code == 200
    assert anonymous.get("/static/vendor/htmx.min.js").status_code == 200
    # Where to go back to after signing in: this site only.
    assert anonymous.get("/runs?state=FAILED").headers["location"] == "/signin?next=%2Fruns%3Fstate%3DFAILED"


def test_sign_in_keeps_the_token_server_side_and_sign_out_ends_the_session(served: Served) -> None:
    token = served.cluster.token
    browser = served.browser()
    response = browser.sign_in(token, next="/runs")
    assert response.status_code == 303 and response.headers["location"] == "/runs"
    cookie = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith("titan_dashboard_session=")
    )
    assert (
        "HttpOnly" in cookie
        and "SameSite=strict" in cookie.replace("Strict", "strict")
        and "Path=/" in cookie
    )
    assert "Secure" not in cookie  # served over http here; over https it is Secure
    value = cookie.split(";")[0].split("=", 1)[1]
    assert token not in value and token not in cookie
    page = browser.get("/")
    assert page.status_code == 200 and 'data-testid="signed-in-as"' in page.text
    assert "the cluster token" in page.text and 'data-testid="read-only"' not in page.text
    assert 'data-testid="sign-out"' in page.text
    stolen = dict(browser.http.cookies)

    assert browser.post("/signout", csrf="").status_code == 403  # sign-out is a POST with CSRF too
    out = browser.post("/signout")
    assert out.status_code == 303 and out.headers["location"] == "/signin"
    assert browser.get("/").status_code == 303
    replay = served.browser()
    replay.http.cookies.update(stolen)  # the old cookie names a session that no longer exists
    assert replay.get("/").status_code == 303


def test_sign_in_refuses_wrong_empty_and_forged_attempts(served: Served) -> None:
    browser = served.browser()
    wrong = browser.sign_in("not-a-token")
    assert wrong.status_code == 401 and 'data-testid="signin-error"' in wrong.text
    # An empty token must not fall back to the dashboard's own (its environment, its data dir).
    for empty in ("", "   "):
        response = browser.sign_in(empty)
        assert response.status_code == 400 and "Enter a Titan token" in response.text
    assert browser.get("/").status_code == 303
    # A sign-in form posted without the nonce its page set (login CSRF) is refused.
    forged = served.browser().http.post("/signin", data={"token": served.cluster.token, "nonce": "x"})
    assert forged.status_code == 403 and "expired" in forged.text
    # Somewhere to go after signing in: this site only.
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil"):
        other = served.browser()
        form = other.get("/signin")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        response = other.http.post(
            "/signin", data={"token": served.cluster.token, "nonce": nonce, "next": target}
        )
        assert response.status_code == 303 and response.headers["location"] == "/", target


def test_wrong_tokens_from_one_address_are_slowed_down(served: Served) -> None:
    browser = served.browser()
    for _ in range(6):
        assert browser.sign_in("wrong-token").status_code == 401
    refused = browser.sign_in(served.cluster.token)  # even the right one, until the wait is over
    assert refused.status_code == 429 and "Too many wrong tokens" in refused.text


def test_a_worker_token_cannot_sign_in(served: Served) -> None:
    token, _ = served.cluster.client.create_token("worker", name="gpu1")
    response = served.browser().sign_in(token)
    assert response.status_code in (401, 403) and 'data-testid="signin-error"' in response.text


def test_csrf_is_enforced_on_every_write(served: Served) -> None:
    run = sleeper(served)
    browser = served.browser(served.cluster.token)
    for path in WRITES:
        path = path.format(run=run)
        assert browser.post(path, csrf="").status_code == 403, path
        assert browser.post(path, csrf="wrong").status_code == 403, path
        assert browser.htmx_post(path, csrf="").status_code == 403, path
        assert browser.htmx_post(path, csrf="wrong").status_code == 403, path
        cross = browser.http.post(
            path, data={"csrf_token": browser.csrf}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert cross.status_code == 403, path
    assert served.cluster.client.get_run(run).state == "RUNNING"
    # With the session's token, in the form or in htmx's header, the write goes through.
    done = browser.htmx_post(f"/runs/{run}/cancel")
    assert done.status_code == 200 and "Cancelled" in done.text and done.headers["HX-Retarget"] == "#flash"
    assert served.cluster.client.wait_run(run, 30).state == "CANCELLED"


def test_a_read_token_session_sees_no_write_controls_and_is_refused_writes(served: Served) -> None:
    client = served.cluster.client
    run = sleeper(served)
    gate = client.submit_dag("gated", [TitanJob("gate", command=["true"], approval={"message": "ok?"})])
    wait_until(lambda: client.get_job(f"{gate}/gate").state == "WAITING_APPROVAL", 30, what="the gate")
    client.save_dag("nightly", [TitanJob("n", command=["true"])])
    client.add_schedule("nightly", "nightly", "0 3 * * *")
    wait_until(lambda: client.get_job(f"{run}/sleeper").state == "RUNNING", 30, what="the sleeper to run")
    token, _ = client.create_token("read", name="viewer")
    reader = served.browser(token)
    writer = served.browser(served.cluster.token)
    pages = {
        f"/runs/{run}": "run-cancel",
        f"/jobs/{run}/sleeper": "job-cancel",
        "/approvals": "approve-button",
        f"/jobs/{gate}/gate": "reject-button",
        "/schedules": "schedule-delete",
        "/dags/nightly": "dag-submit",
    }
    for path, control in pages.items():
        assert f'data-testid="{control}"' in writer.get(path).text, path
        page = reader.get(path)
        assert page.status_code == 200 and f'data-testid="{control}"' not in page.text, path
        assert 'data-testid="read-only"' in page.text
    for path in WRITES:
        refused = reader.post(path.format(run=run))
        assert refused.status_code == 403 and "read-only" in refused.text, path
        assert reader.htmx_post(path.format(run=run)).status_code == 403, path
    assert client.get_run(run).state == "RUNNING"
    assert client.get_job(f"{gate}/gate").state == "WAITING_APPROVAL"
    assert [s.name for s in client.list_schedules()] == ["nightly"]
    # Signing out is not a write: a read-only session may.
    assert reader.post("/signout").status_code == 303


def test_the_users_own_token_decides_what_the_master_allows(served: Served) -> None:
    """A submit token may act on its own runs only: the master refuses the rest, and the page says so."""
    run = sleeper(served)
    token, _ = served.cluster.client.create_token("submit", name="ci")
    submitter = served.browser(token)
    page = submitter.get(f"/runs/{run}")
    assert 'data-testid="run-cancel"' in page.text  # a submit token may cancel: the master decides whose
    refused = submitter.post(f"/runs/{run}/cancel")
    assert refused.status_code == 403 and 'data-status="403"' in refused.text
    assert served.cluster.client.get_run(run).state == "RUNNING"


def test_a_revoked_token_ends_its_session(served: Served) -> None:
    client = served.cluster.client
    token, _ = client.create_token("read", name="temp")
    browser = served.browser(token)
    assert browser.get("/").status_code == 200
    client.revoke_token("temp")
    gone = browser.get("/")
    assert gone.status_code == 303 and gone.headers["location"] == "/signin?expired=1"
    assert browser.get("/runs").status_code == 303  # the session is over, not only that page
    assert 'data-testid="signin-expired"' in browser.get("/signin?expired=1").text


def test_every_answer_carries_the_security_headers(served: Served) -> None:
    browser = served.browser(served.cluster.token)
    for path in ("/", "/signin", "/runs/nope", "/static/dashboard.js"):
        headers = browser.get(path).headers
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff", path
