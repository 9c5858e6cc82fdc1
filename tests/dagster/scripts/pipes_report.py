"""Runs on a Titan worker with only dagster-pipes: reports back to Dagster through Pipes."""

import os

from dagster_pipes import open_dagster_pipes

with open_dagster_pipes() as pipes:
    print("pipes script: a plain line on stdout (PIPES-OUT)", flush=True)
    pipes.log.info("pipes script: a structured log message (PIPES-LOG)")
    rows = int(pipes.extras["rows"])
    pipes.report_asset_materialization(
        metadata={
            "rows": rows,
            "worker": os.environ.get("TITAN_WORKER_NAME", ""),
            # Over Titan's 64 KiB line limit: the message arrives split and must be rejoined.
            "sample": "x" * 100_000,
        }
    )
