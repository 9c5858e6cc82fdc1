"""An Airflow DAG whose work runs on Titan: Airflow schedules and shows it, Titan runs it.

    extract (a script on any worker) -> diamond (a whole Titan YAML pipeline as one task)
        -> report (deferrable: frees its Airflow worker slot while Titan runs it)

To run it: put this folder in Airflow's DAGs folder (or point AIRFLOW__CORE__DAGS_FOLDER here),
start a Titan cluster (`titan-runtime up`), define the `titan_default` connection (host, port,
and the token from ~/.titan/token as password), then trigger `titan_example` in the UI, with
`airflow dags test titan_example`, or from Titan: `titan-runtime airflow trigger titan_example`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from titan_airflow import TitanOperator, TitanPipelineOperator

with DAG(
    "titan_example",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["titan"],
    params={"rows": 5},
    default_args={"retries": 1, "retry_delay": timedelta(seconds=10)},
    doc_md=__doc__,
):
    extract = TitanOperator(
        task_id="extract",
        script="steps/extract.py",
        args=["{{ params.rows }}"],
        env={"SOURCE": "airflow run {{ dag_run.run_id }}"},
        timeout=300,
    )
    diamond = TitanPipelineOperator(task_id="diamond", pipeline="../diamond/diamond.yaml")
    report = TitanOperator(
        task_id="report",
        command=["{python}", "steps/report.py"],
        project_dir=".",
        args=[
            "{{ ti.xcom_pull(task_ids='extract')['total'] }}",
            "{{ ti.xcom_pull(task_ids='diamond')['sink'] }}",
        ],
        deferrable=True,
    )
    extract >> diamond >> report
