"""The example under `dagster dev`: launched through the UI's GraphQL API, its run worker and
steps run on Titan (TitanRunLauncher from dagster.yaml), and the UI serves their output from Titan."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers import ProcessCluster, wait_until
from titan_dagster import naming

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning:gql")]

requests = pytest.importorskip("requests")
pytest.importorskip("dagster_webserver", reason="dagster dev needs dagster-webserver (in the dagster extra)")
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example_pipelines" / "dagster"

LOGS_QUERY = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename ... on LogsCapturedEvent { fileKey stepKeys } } }
  }
}
"""
CAPTURED_QUERY = """
query Captured($logKey: [String!]!) {
  capturedLogs(logKey: $logKey) { stdout stderr }
  capturedLogsMetadata(logKey: $logKey) { stdoutLocation }
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def graphql(port: int, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(
        f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def test_the_example_runs_under_dagster_dev_with_the_titan_run_launcher(
    titan: ProcessCluster, tmp_path: Path
) -> None:
    home = tmp_path / "dagster-home"
    home.mkdir()
    shutil.copy(EXAMPLE / "dagster.yaml", home / "dagster.yaml")
    env = dict(
        os.environ, DAGSTER_HOME=str(home), TITAN_ADDRESS=titan.address, TITAN_DATA_DIR=str(titan.data_dir)
    )
    env.pop("TITAN_TOKEN", None)
    port = free_port()
    log = open(tmp_path / "dagster-dev.log", "wb")  # noqa: SIM115
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-m",
            "example_pipelines.dagster.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its webserver, daemon and code server share its process group
    )
    log.close()
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)

        def submitted() -> str | None:
            if dev.poll() is not None:
                raise AssertionError(
                    f"dagster dev exited:\n{(tmp_path / 'dagster-dev.log').read_text()[-4000:]}"
                )
            try:
                return client.submit_job_execution("training")
            except (DagsterGraphQLClientError, requests.RequestException, OSError):
                return None  # still starting, or the code location is still loading

        run_id = wait_until(submitted, timeout=180, interval=0.5, what="dagster dev to accept the run")
        status = wait_until(
            lambda: (s := client.get_run_status(run_id)).value in ("SUCCESS", "FAILURE", "CANCELED") and s,
            timeout=240,
            interval=0.5,
            what="the run to finish",
        )
        assert status.value == "SUCCESS", (tmp_path / "dagster-dev.log").read_text()[-4000:]

        # The run worker was a Titan job, and so was every step.
        kinds = sorted(
            r.labels[naming.LABEL_KIND] for r in titan.client.list_runs(agent_run_id=naming.group_id(run_id))
        )
        assert kinds == ["pipes", "run_worker", "step", "step", "step", "step"]

        # What the UI shows for the `model` step's output comes from the Titan master.
        events = graphql(port, LOGS_QUERY, {"runId": run_id})["logsForRun"]["events"]
        [file_key] = [
            e["fileKey"]
            for e in events
            if e["__typename"] == "LogsCapturedEvent" and e["stepKeys"] == ["model"]
        ]
        captured = graphql(port, CAPTURED_QUERY, {"logKey": [run_id, "compute_logs", file_key]})
        assert "train: slope=" in captured["capturedLogs"]["stdout"]
        assert "on worker gpu" in captured["capturedLogs"]["stdout"]
        assert "Titan job dg-" in captured["capturedLogsMetadata"]["stdoutLocation"]
    finally:
        stop_with_descendants(dev)


def stop_with_descendants(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM `proc` (dagster dev stops its webserver and daemon), then whatever it started that
    outlived it (its code server only notices a missing heartbeat after a while), by pid."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    alive = [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, still = psutil.wait_procs(alive, timeout=15)
    for child in still:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(still, timeout=15)
