"""The DAG the bridge test starts through Airflow's REST API: it runs one Titan job that prints the
run's conf["message"] and fails when conf["outcome"] is "fail"."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from titan_airflow import TitanOperator

with DAG("titan_bridge_target", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    TitanOperator(
        task_id="say",
        command=[
            "{python}",
            "-c",
            "import sys; print('message:', sys.argv[1]); sys.exit(sys.argv[2] == 'fail')",
        ],
        args=["{{ dag_run.conf['message'] }}", "{{ dag_run.conf.get('outcome', 'pass') }}"],
    )
