"""example_pipelines/dagster runs on a real Titan cluster: extract -> train on the GPU worker -> evaluate."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, build_reconstructable_job, execute_job

from tests.dagster.conftest import warm_and_cold
from tests.helpers import ProcessCluster
from titan_dagster import naming

pytestmark = [
    pytest.mark.integration,
    # Raised inside Dagster's own Pipes code: a preview property it reads from every message
    # reader (ours included), and a deprecated accessor it calls itself.
    pytest.mark.filterwarnings("ignore:.*expected_writer_count.*"),
    pytest.mark.filterwarnings("ignore:AssetExecutionContext.run_id is deprecated"),
]

ROOT = Path(__file__).resolve().parents[2]


@warm_and_cold
def test_the_example_trains_on_the_gpu_worker_with_titan_defaults(
    titan: ProcessCluster, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch, warm: bool
) -> None:
    """Its assets' materialisations, one of them reported through Pipes from a Titan job, the same
    whether the steps are forked warm (the default) or start cold (`warm: false`)."""
    # No address or token anywhere in the example: both come from Titan's usual resolution.
    monkeypatch.setenv("TITAN_ADDRESS", titan.address)
    monkeypatch.setenv("TITAN_DATA_DIR", str(titan.data_dir))  # its token file
    monkeypatch.delenv("TITAN_TOKEN", raising=False)
    monkeypatch.chdir(ROOT)
    job = build_reconstructable_job(
        "example_pipelines.dagster.definitions", "training_job", reconstructor_working_directory=str(ROOT)
    )
    cold = {"execution": {"config": {"warm": False}}}
    with execute_job(job, instance=instance, run_config=None if warm else cold) as result:
        assert result.success
        run_id = result.run_id

        def metadata(node: str) -> dict[str, object]:
            [materialization] = result.asset_materializations_for_node(node)
            return {key: value.value for key, value in materialization.metadata.items()}

        samples, model, evaluation, card = (
            metadata(node) for node in ("samples", "model", "evaluation", "model_card")
        )
    assert samples["rows"] == 200
    assert model["worker"] == "gpu"  # titan/requirement: GPU
    assert abs(float(model["slope"]) - 3) < 0.05  # type: ignore[arg-type]
    assert float(evaluation["mse"]) < 0.05  # type: ignore[arg-type]
    assert card["verdict"] == "ship it" and card["mse"] == evaluation["mse"]  # Pipes, from a Titan job
    materialized = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    assert sorted(r.step_key for r in materialized) == ["evaluation", "model", "model_card", "samples"]
    messages = [r.user_message for r in instance.all_logs(run_id)]
    assert any(m.startswith("model card written on worker ") for m in messages)  # a Pipes log message
    kinds = sorted(
        r.labels[naming.LABEL_KIND] for r in titan.client.list_runs(agent_run_id=naming.group_id(run_id))
    )
    assert kinds == ["pipes", "step", "step", "step", "step"]
