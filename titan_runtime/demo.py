"""`make demo`: a throwaway cluster, an example pipeline end to end, what happened, then stop.

Everything lives in a temporary data dir on an ephemeral port, so it never touches a cluster
the user already runs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from titan_runtime.client.sync import TitanClient
from titan_runtime.local import LocalCluster
from titan_runtime.progress import watch_run

EXAMPLES = Path(__file__).resolve().parent.parent / "example_pipelines"


def _pipeline() -> Path:
    path = EXAMPLES / "diamond" / "diamond.yaml"
    if not path.exists():
        raise click.ClickException(
            f"the example pipelines are not here ({EXAMPLES}); run the demo from a source checkout"
        )
    return path


def run_demo(data_dir: Path | None = None) -> int:
    pipeline = _pipeline()
    with tempfile.TemporaryDirectory(prefix="titan-demo-") as tmp:
        root = data_dir or Path(tmp)
        started = time.perf_counter()
        click.secho("1. Starting a local cluster: a master and 2 workers...", bold=True)
        with LocalCluster(root, port=0, workers=2, slots=2) as cluster:
            click.echo(
                f"   master at {cluster.address}, up in {time.perf_counter() - started:.2f}s (data in {root})"
            )
            with TitanClient(address=cluster.address, token=cluster.token) as client:
                click.secho(f"2. Running {pipeline.relative_to(EXAMPLES.parent)}:", bold=True)
                click.echo("   " + pipeline.read_text().split("\n", 1)[0].lstrip("# "))
                run = client.submit_yaml(pipeline)
                record = watch_run(client, run.id)
                click.secho("3. What happened:", bold=True)
                for job in record.jobs:
                    took = f"{job.ended_at - job.started_at:.2f}s" if job.started_at else "-"
                    click.echo(
                        f"   {job.id:6} {job.state:10} on {job.worker_name:9} in {took:>6}  result={client.get_result(job.ref)}"
                    )
                    for line in client.read_logs(job.ref):
                        click.echo(f"          | {line}")
                click.secho("4. Stopping the cluster.", bold=True)
        ok = record.state == "SUCCEEDED"
        click.secho(
            f"Demo {'succeeded' if ok else 'FAILED'}: run {record.id} {record.state}.",
            fg="green" if ok else "red",
        )
        click.echo(
            "Next: `titan-runtime up` for a long-running cluster, then see README.md and docs/quickstart.md."
        )
        return 0 if ok else 1
