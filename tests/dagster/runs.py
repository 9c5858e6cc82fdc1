"""Starting Dagster runs the way Dagster's own machinery does, for tests that need a run worker process."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, DagsterRun, reconstructable, serialize_value
from dagster._grpc.types import ExecuteRunArgs  # tests may use Dagster internals; titan_dagster may not


def create_run(instance: DagsterInstance, job: Any, run_config: dict[str, Any]) -> DagsterRun:
    """A NOT_STARTED run of `job` that knows where its code is (as one created by the UI would)."""
    recon = reconstructable(job)
    return instance.create_run_for_job(
        job_def=recon.get_definition(), run_config=run_config, job_code_origin=recon.get_python_origin()
    )


def start_run_worker(instance: DagsterInstance, run: DagsterRun, log: Path) -> subprocess.Popen[bytes]:
    """`python -m dagster api execute_run` for `run`: what Dagster's default run launcher starts."""
    assert run.job_code_origin is not None
    args = ExecuteRunArgs(job_origin=run.job_code_origin, run_id=run.run_id, instance_ref=instance.get_ref())
    env = dict(os.environ)
    env["DAGSTER_COMPRESSED_EXECUTE_RUN_ARGS"] = base64.b64encode(
        zlib.compress(serialize_value(args).encode())
    ).decode()
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dagster", "api", "execute_run"],
            env=env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
