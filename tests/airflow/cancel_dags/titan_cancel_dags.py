"""DAGs the cancellation tests start through Airflow's REST API, then mark failed or clear while
their Titan work runs. Every job runs `hold.py DIR`: it records its pid under DIR (named by its
Titan run) and waits for DIR/gate."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from titan_airflow import TitanOperator, TitanPipelineOperator

START = datetime(2024, 1, 1)

with DAG("titan_cancel_deferrable", schedule=None, start_date=START, catchup=False):
    TitanOperator(task_id="held", script="hold.py", args=["{{ dag_run.conf['dir'] }}"], deferrable=True)

with DAG("titan_cancel_sync", schedule=None, start_date=START, catchup=False):
    TitanOperator(task_id="held", script="hold.py", args=["{{ dag_run.conf['dir'] }}"])

with DAG("titan_cancel_pipeline", schedule=None, start_date=START, catchup=False):
    # The test writes pipeline.yaml (its job's folder is only known then) before starting a run.
    TitanPipelineOperator(task_id="held", pipeline="pipeline.yaml")
