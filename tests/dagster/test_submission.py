"""Submissions are idempotent on the ids derived from Dagster's run id, step key and attempt."""

from __future__ import annotations

import pytest

from tests.helpers import PYTHON, ProcessCluster
from titan_dagster import naming, remote
from titan_dagster.placement import Placement
from titan_dagster.step_handler import StepHandlerSettings, TitanStepHandler
from titan_runtime import PermissionDenied, TitanJob

pytestmark = pytest.mark.integration


def submit(cluster: ProcessCluster, command: list[str]) -> remote.Submission:
    return remote.submit(
        cluster.client,
        run_id=naming.step_run_id("run-1", "step[a]", 0),
        job_id=naming.STEP_JOB_ID,
        name="job:step[a]",
        command=command,
        env={"X": "1"},
        placement=Placement(),
        group=naming.group_id("run-1"),
        labels={naming.LABEL_STEP_KEY: "step[a]"},
    )


def test_launching_the_same_attempt_twice_runs_it_once(cluster: ProcessCluster) -> None:
    first = submit(cluster, ["sleep", "30"])
    again = submit(cluster, ["sleep", "30"])  # the same launch delivered twice
    assert again.ref == first.ref and not first.adopted
    # A different spec for the same attempt while it runs: adopt the live job, start nothing.
    other = submit(cluster, ["sleep", "31"])
    assert other.ref == first.ref and other.adopted
    assert len(cluster.client.list_runs(agent_run_id=naming.group_id("run-1"))) == 1

    cluster.client.cancel(first.ref, wait=True)
    # Once that job ended, a re-launch of the attempt (a resumed run) gets the next free id.
    relaunch = submit(cluster, ["true"])
    assert relaunch.ref == f"{naming.step_run_id('run-1', 'step[a]', 0)}-r1/{naming.STEP_JOB_ID}"
    assert cluster.client.wait(relaunch.ref, timeout=30).state == "SUCCEEDED"
    record = cluster.client.get_job(first.ref)
    assert record.state == "CANCELLED" and len(record.attempts) == 1


def test_a_step_nobody_can_run_is_announced(titan: ProcessCluster) -> None:
    handler = TitanStepHandler(StepHandlerSettings(address=titan.address, token=titan.token))
    assert handler._nobody_can_run(Placement(requirement=("GPU",))) == ""
    assert handler._nobody_can_run(Placement()) == ""
    warning = handler._nobody_can_run(Placement(requirement=("TPU",)))
    assert "No connected Titan worker has tags ['TPU']" in warning
    assert "titan-runtime worker --tags TPU" in warning
    assert "at least 3 slots" in handler._nobody_can_run(Placement(requirement=("GPU",), slots=3))


def test_a_run_id_a_job_took_first_is_never_adopted(cluster: ProcessCluster) -> None:
    # A job (any job: its credential may submit runs) guesses the step's deterministic run id and
    # submits a job of its own there, live, before Dagster launches the step.
    step_run = naming.step_run_id("run-1", "step[a]", 0)
    squatter = TitanJob(
        command=[PYTHON, "-c", SQUAT],
        env={"STEP_RUN": step_run, "STEP_JOB": naming.STEP_JOB_ID},
    )
    squat = cluster.client.submit_job(squatter)
    assert cluster.client.wait(squat, 60).state == "SUCCEEDED", cluster.client.fetch_logs(squat)
    assert not cluster.client.get_job(f"{step_run}/{naming.STEP_JOB_ID}").terminal  # live, waiting
    with pytest.raises(
        PermissionDenied, match=f"run id '{step_run}' was submitted by a job of run .*not by this credential"
    ):
        submit(cluster, ["sleep", "30"])
    with pytest.raises(PermissionDenied, match="not by this credential"):
        submit(cluster, ["sleep", "999"])  # not even the squatter's own spec is taken for ours


SQUAT = """
import os
from titan_runtime import TitanClient, TitanJob
with TitanClient() as client:  # the job's own credential, from its environment
    job = TitanJob(os.environ["STEP_JOB"], command=["sleep", "999"], tags=["nowhere"])
    client.submit_dag("squat", [job], run_id=os.environ["STEP_RUN"])
"""


def test_the_executors_tls_settings_reach_a_tls_master(make_cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from titan_dagster.executor import settings_from_config
    from titan_runtime import certs
    from titan_runtime.tls import ClientTls

    ca = tmp_path / "tls"
    certs.init(ca)
    worker, client = certs.issue(ca, "worker", "gpu"), certs.issue(ca, "client", "dagster")
    cluster = make_cluster(master_args=("--tls-dir", str(ca), "--require-client-cert"))
    cluster.tls = ClientTls(str(ca / "ca.pem"), *map(str, worker))
    cluster.add_worker("gpu", tags=("GPU",))
    settings = settings_from_config(
        {
            "address": cluster.address,
            "token": cluster.token,
            "tls_ca": str(ca / "ca.pem"),
            "tls_cert": str(client[0]),
            "tls_key": str(client[1]),
        }
    )
    handler = TitanStepHandler(settings)
    assert [w.name for w in handler.client.list_workers()] == ["gpu"]
    assert "No connected Titan worker has tags ['TPU']" in handler._nobody_can_run(
        Placement(requirement=("TPU",))
    )
