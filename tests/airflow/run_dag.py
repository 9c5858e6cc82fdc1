"""Run one DAG with `dag.test()` in this process and write what happened as JSON.

The Airflow tests start this script as a subprocess (one per DAG run), so Airflow's global
state (settings, ORM, logging) never enters the pytest process, and a test can send the task
SIGTERM exactly as Airflow's supervisor does when a user kills a task. The task log goes to
this process's stdout/stderr, which the test reads.

usage: python run_dag.py DAG_ID --out RESULT.json [--conf JSON]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dag_id")
    parser.add_argument("--out", required=True)
    parser.add_argument("--conf", default="{}")
    opts = parser.parse_args()

    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    bag = DagBag()
    if bag.import_errors:
        print(f"DAG import errors: {bag.import_errors}", file=sys.stderr, flush=True)
    dag = bag.get_dag(opts.dag_id)
    if dag is None:
        print(f"no DAG {opts.dag_id!r} in {bag.dag_folder}: {sorted(bag.dags)}", file=sys.stderr)
        return 2
    print(f"RUN_DAG: starting {opts.dag_id}", flush=True)
    dag_run = dag.test(run_conf=json.loads(opts.conf))
    result: dict[str, Any] = {"dag_id": opts.dag_id, "run_id": dag_run.run_id, "state": str(dag_run.state)}
    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        result["tasks"] = {ti.task_id: {"state": str(ti.state), "try_number": ti.try_number} for ti in tis}
        rows = session.scalars(
            select(XComModel).where(XComModel.dag_id == opts.dag_id, XComModel.run_id == dag_run.run_id)
        ).all()
        xcom: dict[str, dict[str, Any]] = {}
        for row in rows:
            xcom.setdefault(row.task_id, {})[row.key] = XComModel.deserialize_value(row)
        result["xcom"] = xcom
    with open(opts.out, "w") as fh:
        json.dump(result, fh, default=str)
    print(f"RUN_DAG: finished {opts.dag_id} {result['state']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
