"""`titan/resources` with quantities on real Titan processes: a worker declaring fake GPUs
(`titan-runtime worker --gpus 0,1 --cpus 4 --memory 8G`), steps that ask for them through
titan_executor, a Pipes job that asks through PipesTitanClient, and the launch warning when no
connected worker could hold a step."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    AssetExecutionContext,
    DagsterInstance,
    MaterializeResult,
    asset,
    execute_job,
    materialize,
    reconstructable,
)

from tests.dagster import resource_jobs
from tests.dagster.conftest import run_config, titan_compute_logs
from tests.helpers import ProcessCluster
from titan_dagster import TitanResource, naming
from titan_dagster.placement import Placement
from titan_dagster.step_handler import StepHandlerSettings, TitanStepHandler

pytestmark = [
    pytest.mark.integration,
    # Raised inside Dagster's own Pipes code (as in test_pipes.py).
    pytest.mark.filterwarnings("ignore:.*expected_writer_count.*"),
    pytest.mark.filterwarnings("ignore:AssetExecutionContext.run_id is deprecated"),
]

#: A Pipes script that reports the devices its process was given.
REPORT_DEVICES = (
    "import os\n"
    "from dagster_pipes import open_dagster_pipes\n"
    "with open_dagster_pipes() as pipes:\n"
    "    pipes.report_asset_materialization(metadata={\n"
    "        'cuda': os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'),\n"
    "        'worker': os.environ.get('TITAN_WORKER_NAME', ''),\n"
    "    })\n"
)


@pytest.fixture
def gpu_titan(make_cluster) -> ProcessCluster:  # type: ignore[no-untyped-def]
    """A master, a worker "gpu" offering two fake GPUs, 4 CPUs and 8 GiB, and a worker "cpu" with no GPU."""
    cluster = make_cluster()
    cluster.add_worker("gpu", slots=4, args=["--gpus", "0,1", "--cpus", "4", "--memory", "8G"])
    cluster.add_worker("cpu", slots=2, args=["--gpus", "none", "--cpus", "2", "--memory", "4G"])
    return cluster


@pytest.fixture
def gpu_instance(gpu_titan: ProcessCluster, tmp_path: Path) -> Iterator[DagsterInstance]:
    from dagster import instance_for_test

    home = tmp_path / "dagster-home"
    home.mkdir()
    overrides = {"compute_logs": titan_compute_logs(gpu_titan)}
    with instance_for_test(temp_dir=str(home), overrides=overrides) as inst:
        yield inst


def test_a_step_tagged_with_gpus_sees_its_devices_in_cuda_visible_devices(
    gpu_titan: ProcessCluster, gpu_instance: DagsterInstance
) -> None:
    with execute_job(
        reconstructable(resource_jobs.gpu_job), instance=gpu_instance, run_config=run_config(gpu_titan)
    ) as result:
        assert result.success, result.all_events
        one, two, plain = (result.output_for_node(n) for n in ("one_gpu", "two_gpus", "no_gpu"))
        run_id = result.run_id
    # One device, on the only worker that has any; the Titan attempt records the same device.
    assert one["worker"] == "gpu" and one["cuda"] in ("0", "1") and one["nvidia"] == one["cuda"], one
    ref = f"{naming.step_run_id(run_id, 'one_gpu', 0)}/{naming.STEP_JOB_ID}"
    assert gpu_titan.client.wait(ref, timeout=30).attempts[-1].gpus == [one["cuda"]]
    # Two devices (with CPUs and memory) held together.
    assert two["worker"] == "gpu" and sorted(two["cuda"].split(",")) == ["0", "1"], two
    # A step that asks for none is given none, wherever it runs.
    assert plain["cuda"] in ("", "unset"), plain


def test_the_launch_warning_names_the_quantity_no_connected_worker_has(gpu_titan: ProcessCluster) -> None:
    """What list_workers reports (cpu_count, memory_bytes, gpus from the worker's flags) is what the
    step handler compares with: a step nobody could hold is told why when it is launched."""
    handler = TitanStepHandler(StepHandlerSettings(address=gpu_titan.address, token=gpu_titan.token))
    assert handler._nobody_can_run(Placement(gpus=2, cpus=4, memory_mb=8 * 1024)) == ""
    assert handler._nobody_can_run(Placement(requirement=("GPU",), gpus=1)) == ""  # the tag --gpus adds
    assert "has at least 3 GPUs (the most any has: 2 GPUs)" in handler._nobody_can_run(Placement(gpus=3))
    assert "has at least 5 CPUs (the most any has: 4 CPUs)" in handler._nobody_can_run(Placement(cpus=5))
    assert "has at least 16 GiB of memory (the most any has: 8 GiB of memory)" in handler._nobody_can_run(
        Placement(memory_mb=16 * 1024)
    )


@asset
def devices_report(context: AssetExecutionContext, titan: TitanResource) -> MaterializeResult:
    pipes = titan.pipes_client(resources={"gpus": 1})
    return pipes.run(context=context, command=["{python}", "-c", REPORT_DEVICES]).get_materialize_result()


def test_a_pipes_job_asking_for_a_gpu_sees_one_device(
    gpu_titan: ProcessCluster, gpu_instance: DagsterInstance
) -> None:
    titan = TitanResource(address=gpu_titan.address, token=gpu_titan.token)
    result = materialize([devices_report], resources={"titan": titan}, instance=gpu_instance)
    assert result.success
    [materialization] = result.asset_materializations_for_node("devices_report")
    assert materialization.metadata["worker"].value == "gpu"
    assert materialization.metadata["cuda"].value in ("0", "1")
