"""TitanOperator's titan_resources on real Titan processes: a worker declaring fake GPUs
(`titan-runtime worker --gpus 0,1`), DAG runs with dag.test() in a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import ProcessCluster

pytestmark = pytest.mark.integration

RESOURCE_DAGS = Path(__file__).parent / "resource_dags"


@pytest.fixture
def gpu_cluster(make_cluster) -> ProcessCluster:  # type: ignore[no-untyped-def]
    """A master, a worker "gpu" with two fake devices and a worker "cpu" with none."""
    cluster = make_cluster()
    cluster.add_worker("gpu", slots=4, args=["--gpus", "0,1"])
    cluster.add_worker("cpu", slots=4, args=["--gpus", "none"])
    return cluster


def test_a_task_asking_for_a_gpu_sees_one_device(gpu_cluster: ProcessCluster, run_dag) -> None:
    result = run_dag("titan_gpu", gpu_cluster, {"gpus": "2"}, dags_folder=RESOURCE_DAGS).wait()
    assert result.state == "success", result.log
    one = result.xcom["one_gpu"]["return_value"]
    assert one["worker"] == "gpu" and one["cuda"] in ("0", "1"), one
    # Titan's record of the attempt names the same device.
    record = gpu_cluster.client.get_job(result.xcom["one_gpu"]["titan_ref"])
    assert record.attempts[-1].gpus == [one["cuda"]]
    both = result.xcom["conf_gpus"]["return_value"]
    assert both["worker"] == "gpu" and sorted(both["cuda"].split(",")) == ["0", "1"], both
    plain = result.xcom["no_gpu"]["return_value"]
    assert plain["cuda"] in ("", "unset"), plain


def test_a_bad_templated_value_fails_the_task_naming_it(gpu_cluster: ProcessCluster, run_dag) -> None:
    result = run_dag("titan_gpu", gpu_cluster, {"gpus": "two"}, dags_folder=RESOURCE_DAGS).wait()
    assert result.state == "failed"
    assert result.task_state("conf_gpus") == "failed"
    assert result.task_state("one_gpu") == "success"
    assert (
        "task conf_gpus: titan_resources: resources.gpus must be a whole number of GPUs from 0 to 1024, not 'two'"
        in result.log
    )
