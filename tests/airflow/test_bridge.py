"""The way back: Titan (the CLI, and the SDK inside a Titan job) starts Airflow DAG runs and waits for them,
against a real `airflow api-server` and `airflow scheduler` started and stopped by the test."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import airflow_client.client as af
import pytest
from click.testing import CliRunner, Result

from tests.airflow.harness import BRIDGE_DAGS, PYTHON, AirflowServices, airflow_running, titan_cluster
from tests.helpers import ProcessCluster
from titan_airflow.bridge import AirflowBridge
from titan_runtime import TitanJob
from titan_runtime import cli as titan_cli

pytestmark = pytest.mark.integration
JOB = Path(__file__).with_name("jobs") / "trigger_dag.py"


@pytest.fixture(scope="module")
def bridge_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessCluster]:
    """One Titan cluster for the module's tests: starting Airflow's services is the slow part."""
    with titan_cluster(tmp_path_factory.mktemp("bridge") / "titan", slots=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def airflow_services(
    bridge_cluster: ProcessCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowServices]:
    """A fresh Airflow (own metadata DB) with api-server and scheduler."""
    with airflow_running(
        tmp_path_factory.mktemp("bridge_airflow_home"), bridge_cluster, BRIDGE_DAGS
    ) as services:
        yield services


@pytest.fixture
def cli(airflow_services: AirflowServices) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `titan-runtime airflow ARGS` against the test's Airflow; any still running at the end is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [PYTHON, "-m", "titan_runtime", "airflow", *args],
            env={**os.environ, **airflow_services.client_env()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=200)
    return proc.returncode, out, err


def titan_logs_of_dag_runs(cluster: ProcessCluster, dag_id: str) -> dict[str, str]:
    """The output of each Titan job that a run of `dag_id` started, by Airflow run id."""
    runs = [r for r in cluster.client.list_runs() if r.labels.get("airflow.dag_id") == dag_id]
    return {r.labels["airflow.run_id"]: cluster.client.fetch_logs(r.id) for r in runs}


def test_titan_starts_airflow_dag_runs_and_waits_for_their_state(
    airflow_services: AirflowServices,
    bridge_cluster: ProcessCluster,
    cli: Callable[..., subprocess.Popen[str]],
) -> None:
    services, cluster = airflow_services, bridge_cluster
    # One DAG run at a time: Airflow's api-server and scheduler on one SQLite file can stall each
    # other when several runs write at once (production Airflow uses PostgreSQL).
    ok = ["trigger", "titan_bridge_target", "--wait", "--timeout", "150", "--poll-interval", "1", "--json"]
    code, out, err = finish(cli(*ok, "--conf", json.dumps({"message": "from the cli"})))
    assert code == 0, out + err
    run = json.loads(out)
    assert (run["dag_id"], run["state"], run["tasks"]) == (
        "titan_bridge_target",
        "success",
        {"say": "success"},
    )
    assert run["conf"] == {"message": "from the cli"}

    code, out, err = finish(cli(*ok, "--conf", json.dumps({"message": "doomed", "outcome": "fail"})))
    assert code == 1, out + err
    failed = json.loads(out)
    assert (failed["state"], failed["tasks"]) == ("failed", {"say": "failed"})

    # A Titan job starts a run through the SDK call and waits for it.
    job = cluster.client.submit_job(
        TitanJob(filename=str(JOB), args=["from a titan job"], env=services.client_env()), run_id="bridge-job"
    )
    record = cluster.client.wait(job, timeout=200)
    assert record.state == "SUCCEEDED", cluster.client.fetch_logs(job)
    from_job = cluster.client.get_result(job)
    assert from_job["state"] == "success"
    assert from_job["conf"] == {"message": "from a titan job"}
    assert f"Airflow run {from_job['run_id']} ended success" in cluster.client.fetch_logs(job)

    # Each Airflow run ran its task on Titan, which printed the conf it was given.
    logs = titan_logs_of_dag_runs(cluster, "titan_bridge_target")
    assert "message: from the cli" in logs[run["run_id"]]
    assert "message: doomed" in logs[failed["run_id"]]
    assert "message: from a titan job" in logs[from_job["run_id"]]

    # Without --wait: print the new run and return at once.
    code, out, err = finish(cli("trigger", "titan_bridge_target", "--conf", '{"message": "x"}'))
    assert code == 0, err
    dag_id, run_id, state = out.split()
    assert dag_id == "titan_bridge_target" and state in ("queued", "running")
    code, out, err = finish(cli("status", "titan_bridge_target", run_id, "--wait", "--timeout", "150"))
    assert code == 0, out + err
    assert out.splitlines() == [f"titan_bridge_target {run_id} success", "  say: success"]

    # Mistakes that only the server can tell get a sentence saying what to fix.
    code, _, err = finish(cli("trigger", "no_such_dag"))
    assert code == 1 and "no_such_dag" in err and "not found" in err and "airflow dags list" in err
    code, _, err = finish(cli("trigger", "titan_bridge_target", "--password", "wrong"))
    assert code == 1 and "refused user 'titan': check the username and password" in err


def test_bridge_errors_that_need_no_airflow_say_what_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_AIRFLOW_URL", "http://127.0.0.1:1")
    for name in ("TITAN_AIRFLOW_USERNAME", "TITAN_AIRFLOW_PASSWORD", "TITAN_AIRFLOW_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str) -> Result:
        return CliRunner().invoke(titan_cli.cli, ["airflow", "trigger", "some_dag", *args])

    done = run("--conf", "[1]")
    assert done.exit_code == 2 and "Invalid value for --conf: must be a JSON object, not list" in done.output
    done = run("--conf", "{nope")
    assert done.exit_code == 2 and "not valid JSON" in done.output
    done = run()
    assert done.exit_code == 1
    assert "cannot reach Airflow at http://127.0.0.1:1" in done.output and "TITAN_AIRFLOW_URL" in done.output
    done = run("--url", "127.0.0.1:8080")
    assert done.exit_code == 1 and "must start with http:// or https://" in done.output
    done = run("--username", "someone")
    assert done.exit_code == 1 and "needs a password" in done.output


def test_the_connection_form_test_button_reaches_titan(
    airflow_services: AirflowServices, bridge_cluster: ProcessCluster
) -> None:
    """What the UI's Test button does: the api-server builds a TitanHook from the form and calls it."""
    services, cluster = airflow_services, bridge_cluster
    with AirflowBridge(services.url, services.USER, services.PASSWORD) as bridge:
        api = af.ConnectionApi(bridge._client())

        def test(token: str) -> tuple[bool, str]:
            body = af.ConnectionBody(
                connection_id="titan_form",
                conn_type="titan",
                host="127.0.0.1",
                port=cluster.port,
                password=token,
            )
            response = api.test_connection(body)
            return response.status, response.message

        assert test(cluster.token) == (True, f"Connected to Titan at {cluster.address}: 1 worker(s) alive")
        ok, message = test("wrong-token")
        assert not ok and message
