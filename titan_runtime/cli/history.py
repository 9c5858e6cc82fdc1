"""The cluster's history: `runs` (list, delete) and `gc` (retention, now)."""

from __future__ import annotations

import json

import click

from titan_runtime.cli.options import client_options, parse_labels, since_option
from titan_runtime.cli.output import fmt_time, print_table
from titan_runtime.client.retention import GcReportRecord
from titan_runtime.client.sync import TitanClient
from titan_runtime.diskspace import human


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option(
    "--limit", default=50, show_default=True, help="Most recent runs to show (0: the latest 1,000)."
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"], case_sensitive=False),
    help="Only runs in this state (repeatable).",
)
@click.option(
    "--name", default=None, help="Only runs whose name matches this pattern (* and ? as in a shell)."
)
@click.option(
    "--label",
    "label_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only runs with this label (repeatable).",
)
@since_option("runs created")
@click.option(
    "--before-seq",
    type=click.IntRange(min=0),
    default=0,
    metavar="SEQ",
    help="Only runs submitted before the run with this seq (a page's last, in --json): the next page.",
)
@client_options
@click.pass_context
def runs(
    ctx: click.Context,
    client: TitanClient,
    as_json: bool,
    limit: int,
    states: tuple[str, ...],
    name: str | None,
    label_pairs: tuple[str, ...],
    since: float,
    before_seq: int,
) -> None:
    """List runs, newest first; `runs delete RUN` deletes one that has ended.

    Page through all of history with --json: each run has its `seq`; pass the last one's as
    --before-seq for the next page."""
    if ctx.invoked_subcommand is not None:
        return
    labels = parse_labels(label_pairs)
    states = tuple(s.upper() for s in states)
    records = client.list_runs(
        limit, states=states, name=name, labels=labels, since=since, before_seq=before_seq
    )
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    print_table(
        ["RUN", "NAME", "STATE", "JOBS", "CREATED"],
        [
            [
                r.id,
                r.name,
                r.state,
                " ".join(f"{k}={v}" for k, v in sorted(r.counts.items())),
                fmt_time(r.created_at),
            ]
            for r in records
        ],
    )


def _print_report(report: GcReportRecord, as_json: bool, verb: str) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(
        f"{verb} {report.runs} runs, {report.kv_keys} KV keys, {report.log_files} logs "
        f"({human(report.log_bytes)}), {report.artifacts} artifacts ({human(report.artifact_bytes)})"
    )
    for run_id in report.run_ids:
        click.echo(f"  run {run_id}")
    if report.runs > len(report.run_ids):
        click.echo(f"  ... and {report.runs - len(report.run_ids)} more runs")


@runs.command("delete")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print what was deleted as JSON.")
@client_options
def delete_run(client: TitanClient, run_id: str, as_json: bool) -> None:
    """Delete a run that has ended: its jobs, logs, artifact names and the KV keys its jobs made.

    A run labelled keep=true is deleted too (retention never collects it, but this was asked for).
    A running run is refused: cancel it first. Needs the cluster token or an admin token.
    """
    _print_report(client.delete_run(run_id), as_json, "deleted")


@click.command()
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@client_options
def gc(client: TitanClient, dry_run: bool, as_json: bool) -> None:
    """Apply the master's retention now (it also runs by itself every few minutes).

    Finished runs past their retention go with their jobs, logs, artifact names and the KV keys
    their jobs made; then logs and unused artifacts by age and total size. Runs labelled keep=true
    are never collected. The settings are the master's: `--retention NAME=VALUE` (docs/retention.md).
    Needs the cluster token or an admin token.
    """
    report = client.collect_garbage(dry_run=dry_run)
    _print_report(report, as_json, "would delete" if dry_run else "deleted")
