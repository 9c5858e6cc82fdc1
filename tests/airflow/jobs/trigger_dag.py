"""A Titan job that starts an Airflow DAG run through the bridge, waits for it, and returns its state."""

import sys

from titan_airflow.bridge import trigger_dag_run
from titan_runtime import task

info = trigger_dag_run(
    "titan_bridge_target", {"message": sys.argv[1]}, wait=True, timeout=150, poll_interval=1
)
print(f"Airflow run {info.run_id} ended {info.state}")
task.set_result(info.to_dict())
