"""Runs on a Titan worker through Dagster Pipes: needs dagster-pipes, not Dagster."""

import os

from dagster_pipes import open_dagster_pipes

with open_dagster_pipes() as pipes:
    mse = float(pipes.extras["mse"])
    verdict = "ship it" if mse < 0.05 else "needs work"
    print(f"model card: mse={mse:.5f} -> {verdict}", flush=True)
    pipes.log.info(f"model card written on worker {os.environ.get('TITAN_WORKER_NAME', '?')}")
    pipes.report_asset_materialization(
        metadata={"verdict": verdict, "mse": mse, "worker": os.environ.get("TITAN_WORKER_NAME", "")}
    )
