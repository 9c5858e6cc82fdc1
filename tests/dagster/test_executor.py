"""titan_executor on a real Titan master and real workers: every step is a Titan job."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance, execute_job, reconstructable

from tests.dagster import jobs
from tests.dagster.conftest import run_config
from tests.helpers import ProcessCluster
from titan_dagster import naming

pytestmark = pytest.mark.integration


def test_steps_pass_outputs_and_the_gpu_step_runs_on_the_gpu_worker(
    titan: ProcessCluster, instance: DagsterInstance
) -> None:
    with execute_job(reconstructable(jobs.pipeline_job), instance=instance, run_config=run_config(titan)) as result:
        assert result.success, result.all_events
        model = result.output_for_node("train")
        scored = result.output_for_node("evaluate")
        run_id = result.run_id
    assert model["weights"] == 14
    assert scored["score"] == 28
    # Each step was its own Titan job, in its own process, never the test's.
    train_ref = f"{naming.step_run_id(run_id, 'train', 0)}/{naming.STEP_JOB_ID}"
    record = titan.client.get_job(train_ref)
    assert record.state == "SUCCEEDED"
    assert record.worker_name == "gpu" == model["worker"]
    assert record.tags == ["gpu"] and record.priority == 7
    assert model["titan_run"] == naming.step_run_id(run_id, "train", 0)
    titan_runs = titan.client.list_runs(agent_run_id=naming.group_id(run_id))
    assert sorted(r.labels[naming.LABEL_STEP_KEY] for r in titan_runs) == ["evaluate", "extract", "train"]
