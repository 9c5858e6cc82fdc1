"""Every page of the dashboard over HTTP against a live cluster: what it shows, what its controls do
(checked through the SDK), and 404 pages for ids that do not exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.dashboard.conftest import Browser, Served
from tests.helpers import wait_until
from titan_runtime import TitanJob
from titan_runtime.dashboard.render import when

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "example_pipelines"
API = str(EXAMPLES / "services" / "api.py")

#: Every GET route and the test that reads it (test_every_route_is_covered keeps this whole).
PAGES = {
    "/": "test_overview_shows_the_workers_the_queue_and_the_latest_runs",
    "/runs": "test_runs_are_filtered_and_paged",
    "/runs/{run_id}": "test_a_run_shows_its_graph_jobs_and_cancels",
    "/jobs/{run_id}/{job_id}": "test_a_job_shows_attempts_result_and_its_full_log",
    "/jobs/{run_id}/{job_id}/log": "test_a_job_shows_attempts_result_and_its_full_log",
    "/services": "test_services_are_listed_restarted_and_stopped",
    "/services/{service_id}": "test_services_are_listed_restarted_and_stopped",
    "/approvals": "test_gates_are_approved_and_rejected_with_a_comment",
    "/schedules": "test_schedules_and_saved_dags",
    "/dags/{name}": "test_schedules_and_saved_dags",
    "/autoscaler": "test_autoscaler_and_agent_runs",
    "/agent-runs": "test_autoscaler_and_agent_runs",
    "/agent-runs/{agent_run_id}": "test_autoscaler_and_agent_runs",
    "/signin": "tests/dashboard/test_auth.py",
    "/healthz": "tests/dashboard/test_auth.py",
    "/live/status": "tests/dashboard/test_live.py",
    "/live/overview": "tests/dashboard/test_live.py",
    "/live/runs/{run_id}": "tests/dashboard/test_live.py",
    "/live/jobs/{run_id}/{job_id}": "tests/dashboard/test_live.py",
    "/live/services": "tests/dashboard/test_live.py",
    "/live/approvals": "tests/dashboard/test_live.py",
}
#: POST routes: every one is in test_auth.WRITES (CSRF, read-only) and acted on here.
ACTIONS = {
    "/signin", "/signout", "/runs/{run_id}/cancel", "/jobs/{run_id}/{job_id}/cancel",
    "/services/{service_id}/stop", "/services/{service_id}/restart", "/approvals/{run_id}/{job_id}/decide",
    "/schedules/{name}/delete", "/dags/{name}/submit",
}  # fmt: skip


def found_ids(html: str, testid: str, attr: str) -> list[str]:
    """The `attr` of every element with data-testid=`testid`, in order."""
    found = []
    for tag in re.findall(r"<[^>]*\bdata-testid=\"" + re.escape(testid) + r"\"[^>]*>", html):
        value = re.search(r"\b" + re.escape(attr) + r"=\"([^\"]*)\"", tag)
        found.append(value.group(1) if value else "")
    return found


def page_data(html: str, element_id: str) -> dict:  # type: ignore[type-arg]
    found = re.search(r'<script type="application/json" id="' + element_id + r'">(.*?)</script>', html, re.S)
    assert found, html
    return json.loads(found.group(1))


def signed_in(served: Served) -> Browser:
    return served.browser(served.cluster.token)


def test_every_route_is_covered(served: Served) -> None:
    app = served.running.server.config.app
    gets = {r.path for r in app.routes if "GET" in (getattr(r, "methods", None) or ())}
    posts = {r.path for r in app.routes if "POST" in (getattr(r, "methods", None) or ())}
    assert gets == set(PAGES)
    assert posts == ACTIONS


def test_overview_shows_the_workers_the_queue_and_the_latest_runs(served: Served) -> None:
    client = served.cluster.client
    run = client.submit_dag("hello", [TitanJob("a", command=["true"])])
    client.wait_run(run, 30)
    waiting = client.submit_dag("needs-a-gpu", [TitanJob("train", command=["true"], tags=["gpu"])])
    browser = signed_in(served)

    def shown() -> object:
        page = browser.get("/")
        return page if run in page.text and 'data-tags="gpu"' in page.text else None

    page = wait_until(shown, 20, what="the run and the queue on the overview")
    assert found_ids(page.text, "worker-row", "data-worker") == ["w1"]
    assert 'data-testid="worker-spark"' in page.text and 'data-testid="worker-slots"' in page.text
    assert found_ids(page.text, "run-row", "data-run")[:2] == [waiting, run]
    assert found_ids(page.text, "queue-row", "data-tags") == ["gpu"]
    for card in ("summary-workers", "summary-slots", "summary-queued", "summary-jobs-per-second"):
        assert f'data-testid="{card}"' in page.text
    assert 'sse-connect="/live/overview"' in page.text


def test_runs_are_filtered_and_paged(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    from titan_runtime.dashboard.routes import runs as runs_module

    client = served.cluster.client
    ok = client.submit_dag("nightly-etl", [TitanJob("a", command=["true"])], labels={"team": "ml"})
    bad = client.submit_dag("adhoc", [TitanJob("a", command=["false"])], agent_run_id="agent-7")
    other = client.submit_dag("nightly-report", [TitanJob("a", command=["true"])])
    for run in (ok, bad, other):
        client.wait_run(run, 30)
    browser = signed_in(served)

    def listed(query: str) -> list[str]:
        response = browser.get("/runs" + query)
        assert response.status_code == 200, response.text
        return found_ids(response.text, "run-row", "data-run")

    assert listed("") == [other, bad, ok]
    assert listed("?state=FAILED") == [bad]
    assert listed("?state=SUCCEEDED&state=FAILED") == [other, bad, ok]
    assert listed("?name=nightly") == [other, ok]  # text: found anywhere in the name
    assert listed("?name=nightly-e*") == [ok]  # a pattern: as given
    assert listed("?label=team%3Dml") == [ok]
    assert listed("?agent=agent-7") == [bad]
    refused = browser.get("/runs?label=nonsense")
    assert refused.status_code == 400 and 'data-testid="filter-error"' in refused.text
    monkeypatch.setattr(runs_module, "PAGE_SIZE", 2)
    first = browser.get("/runs")
    assert found_ids(first.text, "run-row", "data-run") == [other, bad]
    assert 'data-testid="page-newest"' not in first.text
    next_url = found_ids(first.text, "page-next", "href")[0].replace("&amp;", "&")
    later = client.submit_dag("later", [TitanJob("a", command=["true"])])  # the cursor holds still
    second = browser.get(next_url)
    assert found_ids(second.text, "run-row", "data-run") == [ok]
    assert 'data-testid="page-next"' not in second.text
    assert found_ids(second.text, "page-newest", "href") == ["/runs"]
    assert found_ids(browser.get("/runs").text, "run-row", "data-run") == [later, other]
    filtered = browser.get("/runs?state=SUCCEEDED&state=FAILED")
    assert "state=SUCCEEDED&amp;state=FAILED" in found_ids(filtered.text, "page-next", "href")[0]
    assert browser.get("/runs?before=nonsense").status_code == 200  # from the latest


def test_a_run_shows_its_graph_jobs_and_cancels(served: Served) -> None:
    client = served.cluster.client
    first = TitanJob("first", command=["true"])
    slow = TitanJob("slow", command=["sleep", "300"])
    last = TitanJob("last", command=["true"])
    first >> slow >> last
    run = client.submit_dag("three", [first, slow, last])
    wait_until(lambda: client.get_job(f"{run}/slow").state == "RUNNING", 30, what="slow to run")
    browser = signed_in(served)
    page = browser.get(f"/runs/{run}")
    assert page.status_code == 200
    nodes = found_ids(page.text, "run-node", "data-job")
    assert nodes == ["first", "slow", "last"]  # parents before children
    states = dict(zip(nodes, found_ids(page.text, "run-node", "data-state"), strict=True))
    assert states == {"first": "SUCCEEDED", "slow": "RUNNING", "last": "PENDING"}
    data = page_data(page.text, "run-data")
    assert data["graph"] and {j["id"]: j["parents"] for j in data["jobs"]} == {
        "first": [], "slow": ["first"], "last": ["slow"]}  # fmt: skip
    assert 'data-testid="run-graph"' in page.text and 'data-testid="run-gantt"' in page.text
    assert f'sse-connect="/live/runs/{run}"' in page.text
    assert (
        "/static/vendor/cytoscape.min.js" in page.text
        and "/static/vendor/cytoscape-dagre.min.js" in page.text
    )

    cancelled = browser.post(f"/runs/{run}/cancel")
    assert cancelled.status_code == 303 and cancelled.headers["location"] == f"/runs/{run}"
    assert client.wait_run(run, 30).state == "CANCELLED"
    after = browser.get(f"/runs/{run}")
    assert "Cancelled" in after.text and 'data-testid="flash-info"' in after.text  # the flash, once
    assert 'data-testid="run-cancel"' not in after.text
    assert "cancelled from the dashboard by the cluster token" in client.get_job(f"{run}/slow").reason


def _refuse(reason: str) -> None:
    raise PermissionError(reason)


def test_a_function_tasks_page_says_what_it_returned_or_raised(served: Served) -> None:
    client = served.cluster.client
    value, error = client.submit_fn(sorted, [3, 1, 2]), client.submit_fn(_refuse, "no entry")
    assert value.result(timeout=60) == [1, 2, 3]
    with pytest.raises(PermissionError):
        error.result(timeout=60)
    browser = signed_in(served)
    shown = browser.get(f"/jobs/{value.run_id}/{value.job_id}").text
    assert "a Python value (" in shown and "titan.python" not in shown  # not its base64
    failed = browser.get(f"/jobs/{error.run_id}/{error.job_id}").text
    assert "raised PermissionError: no entry" in failed and "in _refuse" in failed


def test_a_job_shows_attempts_result_and_its_full_log(served: Served) -> None:
    client = served.cluster.client
    script = "import json, os\nfor i in range(3000): print('line', i)\njson.dump({'answer': 42}, open(os.environ['TITAN_RESULT_FILE'], 'w'))"
    publish = "from titan_runtime import task\nopen('m.bin', 'wb').write(b'x' * 2048)\ntask.publish_artifact('model.bin', 'm.bin')"
    run = client.submit_dag(
        "logs",
        [
            TitanJob("talk", command=["python3", "-c", script]),
            TitanJob("pub", command=["{python}", "-c", publish]),
        ],
    )
    client.wait_run(run, 60)
    browser = signed_in(served)
    page = browser.get(f"/jobs/{run}/talk")
    assert page.status_code == 200
    assert found_ids(page.text, "attempt-row", "data-attempt") == ["1"]
    assert 'data-testid="job-result"' in page.text and "&#34;answer&#34;: 42" in page.text
    assert 'data-testid="log"' in page.text and 'data-testid="log-download"' in page.text
    assert 'data-testid="job-cancel"' not in page.text  # it has ended
    assert found_ids(page.text, "artifact-row", "data-name") == ["model.bin"] and "2.0 KiB" in page.text
    full = browser.get(f"/jobs/{run}/talk/log")
    assert full.status_code == 200 and full.text == client.fetch_logs(f"{run}/talk")
    assert full.text.splitlines()[-1] == "line 2999"
    assert full.headers["content-disposition"] == f'attachment; filename="{run}_talk_attempt1.log"'
    assert browser.get(f"/jobs/{run}/talk/log?attempt=1").text == full.text
    for bad in ("2", "0x", "-1"):
        assert browser.get(f"/jobs/{run}/talk/log?attempt={bad}").status_code == 404, bad

    sleeper = client.submit_dag("cancel-me", [TitanJob("sleeper", command=["sleep", "300"])])
    wait_until(lambda: client.get_job(f"{sleeper}/sleeper").state == "RUNNING", 30, what="the sleeper")
    running = browser.get(f"/jobs/{sleeper}/sleeper")
    assert 'data-testid="job-cancel"' in running.text
    assert browser.post(f"/jobs/{sleeper}/sleeper/cancel").status_code == 303
    assert client.wait(f"{sleeper}/sleeper", 30).state == "CANCELLED"


def test_services_are_listed_restarted_and_stopped(served: Served) -> None:
    client = served.cluster.client
    client.submit_job(TitanJob("api", API, job_type="SERVICE"))
    first = wait_until(
        lambda: next((s for s in client.list_services("api") if s.state == "HEALTHY"), None), 30, what="api"
    )
    browser = signed_in(served)
    page = browser.get("/services")
    assert found_ids(page.text, "service-row", "data-service") == ["api"]
    assert first.endpoint in page.text and found_ids(page.text, "service-stop", "data-service") == ["api"]
    detail = browser.get("/services/api")
    assert detail.status_code == 200 and 'data-testid="service-restart"' in detail.text

    restarted = browser.htmx_post("/services/api/restart")
    assert restarted.status_code == 200 and "Restarting" in restarted.text
    wait_until(
        lambda: any(
            s.state == "HEALTHY" and s.started_at > first.started_at for s in client.list_services("api")
        ),
        30,
        what="api restarted",
    )
    stopped = browser.post("/services/api/stop", {"next": "/services"})
    assert stopped.status_code == 303 and stopped.headers["location"] == "/services"
    wait_until(lambda: not client.list_services("api"), 30, what="api stopped")
    ended = browser.get("/services?ended=1")
    assert found_ids(ended.text, "service-row", "data-state") == ["STOPPED"]


def test_gates_are_approved_and_rejected_with_a_comment(served: Served) -> None:
    client = served.cluster.client
    jobs = [TitanJob(name, command=["true"], approval={"message": f"{name}?"}) for name in ("yes", "no")]
    # The master lists the gates of live runs: a job that goes on keeps the decided ones listed.
    run = client.submit_dag("gates", [*jobs, TitanJob("on", command=["sleep", "300"])])
    wait_until(
        lambda: all(client.get_job(f"{run}/{j}").state == "WAITING_APPROVAL" for j in ("yes", "no")),
        30,
        what="gates",
    )
    browser = signed_in(served)
    page = browser.get("/approvals")
    assert sorted(found_ids(page.text, "approval-row", "data-ref")) == [f"{run}/no", f"{run}/yes"]
    # Waiting since: when the gate opened (its job's last attempt ended; the job itself has not).
    refs = found_ids(page.text, "approval-row", "data-ref")
    since = dict(zip(refs, found_ids(page.text, "approval-since", "title"), strict=True))
    for ref in refs:
        opened = client.get_job(ref).attempts[-1].ended_at
        assert opened and since[ref] == when(opened), (ref, since)
    shown = re.findall(r'data-testid="approval-since"[^>]*>([^<]*)<', page.text)
    assert len(shown) == 2 and all(text.endswith(" ago") for text in shown), shown
    assert sorted(found_ids(page.text, "approve-button", "data-ref")) == [f"{run}/no", f"{run}/yes"]
    assert browser.htmx_post(f"/approvals/{run}/yes/decide", {"decision": "maybe"}).status_code == 400
    approved = browser.htmx_post(f"/approvals/{run}/yes/decide", {"decision": "approve", "comment": "fine"})
    assert approved.status_code == 200 and "Approved" in approved.text
    rejected = browser.post(
        f"/approvals/{run}/no/decide", {"decision": "reject", "comment": "not now", "next": f"/jobs/{run}/no"}
    )
    assert rejected.status_code == 303 and rejected.headers["location"] == f"/jobs/{run}/no"
    decided = {g.id: g.decision for g in client.list_approvals()}
    assert decided["yes"]["decision"] == "approved" and decided["yes"]["comment"] == "fine"
    assert decided["no"]["decision"] == "rejected" and decided["no"]["comment"] == "not now"
    assert decided["yes"]["by"] == "the cluster token, in the dashboard"
    again = browser.htmx_post(f"/approvals/{run}/yes/decide", {"decision": "approve"})
    assert again.status_code in (400, 409) and 'data-testid="flash-error"' in again.text
    after = browser.get("/approvals")
    assert sorted(found_ids(after.text, "decided-row", "data-ref")) == [f"{run}/no", f"{run}/yes"]
    assert 'data-testid="approve-button"' not in after.text


def test_schedules_and_saved_dags(served: Served) -> None:
    client = served.cluster.client
    client.save_dag("nightly", [TitanJob("extract", command=["true"], env={"SECRET_ISH": "hidden-value"})])
    client.add_schedule("nightly-3am", "nightly", "0 3 * * *")
    browser = signed_in(served)
    page = browser.get("/schedules")
    assert found_ids(page.text, "schedule-row", "data-schedule") == ["nightly-3am"]
    assert found_ids(page.text, "dag-row", "data-dag") == ["nightly"]
    dag = browser.get("/dags/nightly")
    assert found_ids(dag.text, "dag-job", "data-job") == ["extract"]
    assert "SECRET_ISH" in dag.text and "hidden-value" not in dag.text  # environment names, not values
    submitted = browser.post("/dags/nightly/submit")
    assert submitted.status_code == 303
    run = submitted.headers["location"].rsplit("/", 1)[1]
    assert client.wait_run(run, 30).name == "nightly"
    assert browser.post("/schedules/nightly-3am/delete").status_code == 303
    assert client.list_schedules() == []
    assert browser.post("/schedules/nightly-3am/delete").status_code == 404  # gone already


def test_autoscaler_and_agent_runs(served: Served) -> None:
    client = served.cluster.client
    run = client.submit_dag("step", [TitanJob("a", command=["true"])], agent_run_id="agent-42")
    client.wait_run(run, 30)
    browser = signed_in(served)
    assert 'data-testid="autoscaler-off"' in browser.get("/autoscaler").text
    listing = browser.get("/agent-runs")
    assert found_ids(listing.text, "agent-run-row", "data-agent-run") == ["agent-42"]
    detail = browser.get("/agent-runs/agent-42")
    assert found_ids(detail.text, "run-row", "data-run") == [run]


def test_bad_ids_give_404_pages(served: Served) -> None:
    client = served.cluster.client
    run = client.submit_dag("real", [TitanJob("a", command=["true"])])
    client.wait_run(run, 30)
    browser = signed_in(served)
    for path in (
        "/runs/r-nope", f"/jobs/{run}/nope", "/jobs/r-nope/a", f"/jobs/{run}/nope/log", "/services/nope",
        "/agent-runs/nope", "/dags/nope", "/no/such/page", "/runs/" + "x" * 300,
        "/live/runs/r-nope", f"/live/jobs/{run}/nope",
    ):  # fmt: skip
        response = browser.get(path)
        assert response.status_code == 404, path
        assert 'data-testid="error-page"' in response.text and 'data-status="404"' in response.text, path
    for path in ("/runs/r-nope/cancel", "/dags/nope/submit", "/services/nope/stop"):
        assert browser.post(path).status_code == 404, path
