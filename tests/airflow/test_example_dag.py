"""example_pipelines/airflow runs on real Airflow (dag.test) against a real Titan cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.airflow.harness import task_log_lines
from tests.helpers import ProcessCluster

pytestmark = pytest.mark.integration
EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_pipelines" / "airflow"


def test_example_dag(cluster: ProcessCluster, run_dag) -> None:
    result = run_dag("titan_example", cluster, dags_folder=EXAMPLE_DAGS).wait()
    assert result.state == "success", result.log
    assert {task: info["state"] for task, info in result.tasks.items()} == {
        "extract": "success",
        "diamond": "success",
        "report": "success",
    }
    assert result.xcom["extract"]["return_value"] == {"rows": 5, "total": 55}
    assert result.xcom["diamond"]["return_value"]["sink"] == 50
    assert result.xcom["report"]["return_value"] == 105
    lines = task_log_lines(result.log)
    assert f"extracting 5 rows for airflow run {result.run_id}" in lines
    assert "row 5: 25" in lines
    assert "report: extracted total 55, diamond total 50, together 105" in lines
    assert "[sink] sink: left=20 right=30 total=50" in task_log_lines(result.log, "TitanPipelineOperator")
