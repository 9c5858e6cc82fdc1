"""DAGs whose TitanOperator tasks ask Titan for GPUs (titan_resources); the tests run them with
dag.test() against a worker declaring fake devices (`--gpus 0,1`)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from titan_airflow import TitanOperator

START = datetime(2024, 1, 1)

#: The job's result: the devices its process was given, and where it ran.
REPORT_DEVICES = (
    "import os\n"
    "from titan_runtime import task\n"
    "task.set_result({\n"
    "    'cuda': os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'),\n"
    "    'worker': os.environ.get('TITAN_WORKER_NAME', ''),\n"
    "})\n"
)

with DAG("titan_gpu", schedule=None, start_date=START, catchup=False):
    TitanOperator(task_id="one_gpu", command=["{python}", "-c", REPORT_DEVICES], titan_resources={"gpus": 1})
    # Templated: the number of devices comes from the run's conf, checked once rendered.
    TitanOperator(
        task_id="conf_gpus",
        command=["{python}", "-c", REPORT_DEVICES],
        titan_resources={"gpus": "{{ dag_run.conf.get('gpus', 2) }}", "memory": "256M", "cpus": 0.5},
    )
    TitanOperator(task_id="no_gpu", command=["{python}", "-c", REPORT_DEVICES])
