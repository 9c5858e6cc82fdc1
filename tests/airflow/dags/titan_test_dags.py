"""DAGs the Airflow tests run with dag.test(); each takes its parameters from the run's conf."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from titan_airflow import TitanOperator, TitanPipelineOperator

START = datetime(2024, 1, 1)
PY = "{python}"

# Succeeds; its first task waits for conf["gate"] (if given) after its first line, so a test can
# watch that line arrive in the task log while the job is still running.
with DAG("titan_success", schedule=None, start_date=START, catchup=False):
    hello = TitanOperator(
        task_id="hello",
        script="scripts/emit.py",
        args=["{{ dag_run.conf['word'] }}"],
        env={"GATE": "{{ dag_run.conf.get('gate', '') }}", "LINES": "5"},
    )
    echo = TitanOperator(
        task_id="echo_result",
        command=[PY, "-c", "import sys; print('got', sys.argv[1], sys.argv[2])"],
        args=[
            "{{ ti.xcom_pull(task_ids='hello')['word'] }}",
            "{{ ti.xcom_pull(task_ids='hello', key='titan_ref') }}",
        ],
    )
    hello >> echo

with DAG("titan_failure", schedule=None, start_date=START, catchup=False):
    TitanOperator(task_id="fails", script="scripts/fail.py", log_tail_lines=10)

with DAG("titan_deferrable", schedule=None, start_date=START, catchup=False):
    TitanOperator(
        task_id="deferred",
        script="scripts/emit.py",
        args=["{{ dag_run.conf['word'] }}"],
        env={"GATE": "{{ dag_run.conf['gate'] }}", "LINES": "200"},
        deferrable=True,
    )

with DAG("titan_deferrable_failure", schedule=None, start_date=START, catchup=False):
    # The gate keeps the job running until the task has deferred: a job that ends first is not deferred.
    TitanOperator(
        task_id="deferred_fails",
        script="scripts/fail.py",
        env={"GATE": "{{ dag_run.conf['gate'] }}"},
        deferrable=True,
        log_tail_lines=5,
    )

# Its job starts a grandchild and records both pids in conf["pidfile"], then waits forever.
with DAG("titan_kill", schedule=None, start_date=START, catchup=False):
    TitanOperator(
        task_id="sleeper",
        command=["bash", "-c", 'sleep 300 & echo $$ $! > "$PIDFILE"; wait'],
        env={"PIDFILE": "{{ dag_run.conf['pidfile'] }}"},
    )

# Fails on its first try and succeeds on the second.
with DAG(
    "titan_retry",
    schedule=None,
    start_date=START,
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
):
    TitanOperator(
        task_id="flaky",
        command=[
            PY,
            "-c",
            "import os, sys; n = os.environ['AIRFLOW_CTX_TRY_NUMBER']; print('try', n); sys.exit(1 if n == '1' else 0)",
        ],
    )

# A project folder shipped with the job: main.py imports pkg/helper.py from it.
with DAG("titan_project", schedule=None, start_date=START, catchup=False):
    TitanOperator(task_id="script_in_project", project_dir="project", script="main.py", args=["hi"])
    TitanOperator(
        task_id="command_in_project",
        project_dir="project",
        command=[PY, "-c", "from pkg.helper import shout; print(shout('from a command'))"],
    )

with DAG("titan_pipeline", schedule=None, start_date=START, catchup=False):
    TitanPipelineOperator(task_id="diamond", pipeline="pipelines/diamond.yaml")

with DAG("titan_pipeline_failure", schedule=None, start_date=START, catchup=False):
    TitanPipelineOperator(task_id="broken", pipeline="pipelines/broken.yaml", log_tail_lines=2)

with DAG("titan_pipeline_kill", schedule=None, start_date=START, catchup=False):
    TitanPipelineOperator(task_id="sleepers", pipeline="pipelines/sleeper.yaml")
