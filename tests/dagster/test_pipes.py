"""PipesTitanClient: an asset runs a script on a Titan worker and gets logs, metadata and a
materialization back through Dagster Pipes; the worker never touches Dagster's storage."""

from pathlib import Path

import pytest
from dagster import (
    AssetExecutionContext,
    DagsterEventType,
    DagsterInstance,
    MaterializeResult,
    asset,
    materialize,
)

from tests.helpers import ProcessCluster
from titan_dagster import TitanResource, naming

pytestmark = [
    pytest.mark.integration,
    # Raised inside Dagster's own Pipes code: a preview property it reads from every message
    # reader (ours included), and a deprecated accessor it calls itself.
    pytest.mark.filterwarnings("ignore:.*expected_writer_count.*"),
    pytest.mark.filterwarnings("ignore:AssetExecutionContext.run_id is deprecated"),
]

SCRIPTS = Path(__file__).parent / "scripts"


@asset
def scored(context: AssetExecutionContext, titan: TitanResource) -> MaterializeResult:
    pipes = titan.pipes_client(requirement="GPU")
    return pipes.run(
        context=context, script=str(SCRIPTS / "pipes_report.py"), extras={"rows": 42}
    ).get_materialize_result()


@asset
def broken(context: AssetExecutionContext, titan: TitanResource) -> MaterializeResult:
    return (
        titan.pipes_client()
        .run(context=context, script=str(SCRIPTS / "pipes_fail.py"))
        .get_materialize_result()
    )


def resources(cluster: ProcessCluster) -> dict[str, TitanResource]:
    return {"titan": TitanResource(address=cluster.address, token=cluster.token)}


def test_a_pipes_asset_reports_metadata_and_logs_from_a_titan_worker(
    titan: ProcessCluster, instance: DagsterInstance
) -> None:
    result = materialize([scored], resources=resources(titan), instance=instance)
    assert result.success
    [materialization] = result.asset_materializations_for_node("scored")
    metadata = materialization.metadata
    assert metadata["rows"].value == 42
    assert metadata["worker"].value == "gpu"  # routed by requirement to the gpu worker
    assert metadata["sample"].value == "x" * 100_000  # a 100 KB message, split by Titan, rejoined
    messages = [r.user_message for r in instance.all_logs(result.run_id)]
    assert any("PIPES-LOG" in m for m in messages), "structured Pipes log message missing"
    assert any("[pipes] running on Titan as job dgp-" in m for m in messages)
    # The plain output line was forwarded into the step's compute log (captured locally here,
    # since this step itself ran in the test process).
    [captured] = instance.all_logs(result.run_id, of_type=DagsterEventType.LOGS_CAPTURED)
    manager = instance.compute_log_manager
    key = manager.build_log_key_for_run(result.run_id, captured.dagster_event.logs_captured_data.file_key)
    assert b"PIPES-OUT" in (manager.get_log_data(key).stdout or b"")
    [titan_run] = titan.client.list_runs(agent_run_id=naming.group_id(result.run_id))
    assert titan_run.labels[naming.LABEL_KIND] == "pipes" and titan_run.state == "SUCCEEDED"


def test_a_failing_pipes_script_raises_with_the_tail_of_its_output(
    titan: ProcessCluster, instance: DagsterInstance
) -> None:
    result = materialize([broken], resources=resources(titan), instance=instance, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    error = failure.step_failure_data.error
    assert error is not None
    text = error.message + "".join(c.message for c in _causes(error))
    assert "FAILED" in text and "exit code 4" in text
    assert "PIPES-FAIL-MARKER" in text


def _causes(error):  # type: ignore[no-untyped-def]
    while error is not None:
        yield error
        error = error.cause
