"""Runs and DAGs: `run`, `validate`, `run-status`, approvals, agent runs, schedules, saved DAGs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from titan_runtime.cli.options import (
    EXIT_CANCELLED,
    client_options,
    fail,
    friendly_errors,
    parse_labels,
    reconnect_option,
)
from titan_runtime.cli.output import fmt_duration, fmt_time, print_table, warn_if_unplaceable
from titan_runtime.client.records import RunRecord
from titan_runtime.client.sync import TitanClient
from titan_runtime.core.states import JobState

#: Every job state, for --jobs.
JOB_STATES = tuple(state.value for state in JobState)


def _run_exit_code(record: RunRecord) -> int:
    """0 for a run that SUCCEEDED, or that only its (healthy) services keep running."""
    if record.state == "RUNNING":
        return 1 if record.failed_jobs else 0
    return {"SUCCEEDED": 0, "CANCELLED": EXIT_CANCELLED}.get(record.state, 1)


@click.command("run")
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--wait", is_flag=True, help="Show progress until the run ends; exit 0 only if it SUCCEEDED.")
@click.option(
    "--follow", "-f", is_flag=True, help="Like --wait, and print every job's output (prefixed by its id)."
)
@click.option("--name", default=None, help="Run name [default: the pipeline's name].")
@click.option("--label", "labels", multiple=True, help="Label KEY=VALUE (repeatable).")
@click.option("--agent-run", "agent_run_id", default=None, help="Group this run into an agent run.")
@reconnect_option
@client_options
def run_pipeline(
    client: TitanClient,
    pipeline: Path,
    wait: bool,
    follow: bool,
    name: str | None,
    labels: tuple[str, ...],
    agent_run_id: str | None,
) -> None:
    """Check a YAML pipeline whole, then run it as one run; print the run id."""
    from titan_runtime.progress import watch_run

    run = client.submit_yaml(pipeline, agent_run_id, name=name, labels=parse_labels(labels))

    click.echo(run.id, err=follow)
    if not (wait or follow):
        return
    warning = warn_if_unplaceable(client, run.id)
    try:
        record = watch_run(client, run.id, follow=follow)
    except KeyboardInterrupt:
        click.echo(f"\nThe run goes on; cancel it with: titan-runtime cancel {run.id}", err=True)
        sys.exit(EXIT_CANCELLED)
    finally:
        warning.cancel()
    if record.state == "RUNNING":  # settled: its services keep running
        healthy = client.get_run(record.id, jobs=("HEALTHY",), limit=20).jobs
        services = ", ".join(j.id for j in healthy)
        click.echo(
            f"run {record.id}: batch jobs done; services keep running ({services}); "
            f"stop them with `titan-runtime cancel {record.id}` or `titan-runtime service stop ID`",
            err=True,
        )
    elif record.state != "SUCCEEDED":
        click.echo(f"titan-runtime: run {record.id} {record.state}: {record.reason}", err=True)
    sys.exit(_run_exit_code(record))


@click.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@friendly_errors
def validate(pipeline: Path) -> None:
    """Check a YAML pipeline without submitting it; list every error with its line."""
    from titan_runtime.client.pipeline import PipelineError, load_pipeline

    try:
        loaded = load_pipeline(pipeline)
    except PipelineError as exc:
        for error in exc.errors:
            click.echo(error, err=True)
        fail(f"{pipeline} is not a valid pipeline ({len(exc.errors)} error(s))")
    click.echo(f"{pipeline}: ok, pipeline '{loaded.name}' with {len(loaded.jobs)} job(s)")


#: Jobs `run-status` shows in a terminal unless --limit says otherwise: a page, not 10,000 lines.
TERMINAL_PAGE = 100


@click.command("run-status")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.option(
    "--jobs",
    "job_states",
    multiple=True,
    type=click.Choice(JOB_STATES, case_sensitive=False),
    help="Only the jobs in this state (repeatable) [default: every job].",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help=f"At most this many jobs (0: all) [default: {TERMINAL_PAGE} in a terminal, else all].",
)
@client_options
def run_status(
    client: TitanClient, run_id: str, as_json: bool, job_states: tuple[str, ...], limit: int | None
) -> None:
    """Show a run and the state of each of its jobs (or of some: --jobs FAILED --limit 20).

    In a terminal the first 100 jobs are shown, and how many more there are; piped, or with
    --json, every job."""
    if limit is None:
        limit = TERMINAL_PAGE if sys.stdout.isatty() and not as_json else 0
    selected = job_states or (JOB_STATES if limit else None)
    record = client.get_run(run_id, jobs=selected, limit=limit)
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
        return
    counts = ", ".join(f"{n} {state}" for state, n in sorted(record.counts.items()))
    click.echo(
        f"run {record.id} ({record.name}): {record.state}"
        + (f": {record.reason}" if record.reason else "")
        + f"; {sum(record.counts.values())} jobs: {counts}"
    )
    print_table(
        ["JOB", "STATE", "WORKER", "ATTEMPT", "DURATION", "PARENTS", "REASON"],
        [
            [
                j.id,
                j.state,
                j.worker_name or "-",
                str(j.attempt),
                fmt_duration(j),
                ",".join(j.parents) or "-",
                j.reason,
            ]
            for j in record.jobs
        ],
    )
    matching = sum(n for state, n in record.counts.items() if selected is None or state in selected)
    if matching > len(record.jobs):
        click.echo(
            f"... {matching - len(record.jobs):,} more jobs: --limit 0 for all, --jobs STATE for some",
            err=True,
        )


@click.command()
@click.argument("run_id", metavar="RUN")
@click.argument("job_id", metavar="JOB")
@click.option("--comment", default="", help="Why (recorded with the decision).")
@client_options
def approve(client: TitanClient, run_id: str, job_id: str, comment: str) -> None:
    """Approve the gate after RUN/JOB: its dependents run."""
    record = client.approve(run_id, job_id, comment)
    click.echo(f"approved {record.ref}")


@click.command()
@click.argument("run_id", metavar="RUN")
@click.argument("job_id", metavar="JOB")
@click.option("--comment", default="", help="Why (recorded with the decision).")
@client_options
def reject(client: TitanClient, run_id: str, job_id: str, comment: str) -> None:
    """Reject the gate after RUN/JOB: the job fails and its dependents never run."""
    record = client.reject(run_id, job_id, comment)
    click.echo(f"rejected {record.ref}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@client_options
def approvals(client: TitanClient, as_json: bool) -> None:
    """Approval gates: open ones (waiting for a decision) first, then decided ones."""
    records = client.list_approvals()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    if not records:
        click.echo("No approval gates.")
        return
    rows = []
    for r in records:
        d = r.decision or {}
        decided = f"{d.get('decision')} by {d.get('by') or '?'} at {fmt_time(d.get('at', 0))}" if d else "-"
        rows.append([r.ref, r.state, r.approval_message or "-", decided, d.get("comment", "") if d else ""])
    print_table(["JOB", "STATE", "MESSAGE", "DECISION", "COMMENT"], rows)


@click.command("agent-runs")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@client_options
def agent_runs(client: TitanClient, as_json: bool) -> None:
    """Agent runs: runs grouped by their agent_run_id, newest first."""
    records = client.list_agent_runs()
    if as_json:
        click.echo(json.dumps([a.to_dict() for a in records], indent=2))
        return
    if not records:
        click.echo("No agent runs. Group runs with submit_dag(..., agent_run_id=ID) or `run --agent-run ID`.")
        return
    print_table(
        ["AGENT RUN", "STATE", "RUNS", "CREATED"],
        [
            [a.id, a.state, " ".join(f"{r.id}:{r.state}" for r in a.runs), fmt_time(a.created_at)]
            for a in records
        ],
    )


@click.group()
def schedule() -> None:
    """Run saved pipelines on cron schedules (UTC)."""


@schedule.command("add")
@click.argument("name")
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cron", required=True, help='Five cron fields, e.g. "*/5 * * * *" (UTC).')
@click.option("--seconds", is_flag=True, help="CRON has a sixth field, the seconds (last).")
@click.option(
    "--catch-up", is_flag=True, help="After downtime, run once for the last missed time (default: skip)."
)
@client_options
def schedule_add(
    client: TitanClient, name: str, pipeline: Path, cron: str, seconds: bool, catch_up: bool
) -> None:
    """Save PIPELINE under NAME and run it on CRON.

    Everything is checked before anything is saved: a schedule that cannot be added leaves no
    saved pipeline behind."""
    if not name or "/" in name:
        fail(f"invalid schedule name {name!r}: give a name without '/'", 2)
    from titan_runtime.cron import CronError, check_cron

    try:
        check_cron(cron, seconds)
    except CronError as exc:
        raise click.BadParameter(str(exc), param_hint="--cron") from None
    from titan_runtime.client.pipeline import load_pipeline

    load_pipeline(pipeline)  # a PipelineError says what is wrong with it, before anything is saved
    existed = name in client.list_saved_dags()
    client.save_yaml(name, pipeline)
    try:
        record = client.add_schedule(name, name, cron, catch_up, seconds)
    except BaseException:
        if not existed:
            client.delete_saved_dag(name)
        raise
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.next_fire))
    click.echo(
        f"schedule {name}: {cron} (next run {when}; missed runs {'caught up once' if catch_up else 'skipped'})"
    )


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@client_options
def schedule_list(client: TitanClient, as_json: bool) -> None:
    """List schedules with their next and last runs."""
    records = client.list_schedules()
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in records], indent=2))
        return
    if not records:
        click.echo(
            "No schedules. Add one with: titan-runtime schedule add NAME FILE.yaml --cron '*/5 * * * *'"
        )
        return

    def utc(ts: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"

    print_table(
        ["NAME", "CRON", "NEXT (UTC)", "LAST (UTC)", "LAST RUN", "MISSED"],
        [
            [
                s.name,
                s.cron,
                utc(s.next_fire),
                utc(s.last_fire),
                s.last_run_id or "-",
                "catch up" if s.catch_up else "skip",
            ]
            for s in records
        ],
    )


@schedule.command("rm")
@click.argument("name")
@client_options
def schedule_rm(client: TitanClient, name: str) -> None:
    """Delete a schedule (and the pipeline saved for it)."""
    client.delete_schedule(name)
    if name in client.list_saved_dags():
        client.delete_saved_dag(name)
    click.echo(f"deleted schedule {name}")


@click.group()
def dags() -> None:
    """Saved DAGs: pipelines kept on the master under a name, to run or schedule later."""


@dags.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of names.")
@client_options
def dags_list(client: TitanClient, as_json: bool) -> None:
    """List the saved DAGs' names, one per line."""
    names = client.list_saved_dags()
    if as_json:
        click.echo(json.dumps(names))
    elif names:
        click.echo("\n".join(names))
    else:
        click.echo("No saved DAGs. Save one with: titan-runtime dags save NAME FILE.yaml", err=True)


@dags.command("save")
@click.argument("name")
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@client_options
def dags_save(client: TitanClient, name: str, pipeline: Path) -> None:
    """Save PIPELINE (a YAML file) under NAME, its scripts uploaded; it replaces one of that name."""
    client.save_yaml(name, pipeline)
    click.echo(f"saved DAG {name}")


@dags.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the whole saved run as JSON.")
@client_options
def dags_show(client: TitanClient, name: str, as_json: bool) -> None:
    """Show a saved DAG: when it was saved and its jobs with what they run and their parents."""
    dag = client.get_saved_dag(name)
    if as_json:
        click.echo(json.dumps(dag, indent=2))
        return
    click.echo(f"DAG {dag['name']} (saved {fmt_time(dag['saved_at'])}), {len(dag.get('jobs', []))} job(s)")
    print_table(
        ["JOB", "RUNS", "PARENTS"],
        [
            [
                job["id"],
                " ".join(job.get("command", [])) or job.get("script_name", ""),
                ",".join(job.get("parents", [])) or "-",
            ]
            for job in dag.get("jobs", [])
        ],
    )


@dags.command("rm")
@click.argument("name")
@client_options
def dags_rm(client: TitanClient, name: str) -> None:
    """Delete a saved DAG (a schedule that runs it fails until it is saved again)."""
    client.delete_saved_dag(name)
    click.echo(f"deleted saved DAG {name}")


@dags.command("run")
@click.argument("name")
@click.option("--wait", is_flag=True, help="Wait for the run to end; exit as `run --wait` does.")
@client_options
def dags_run(client: TitanClient, name: str, wait: bool) -> None:
    """Submit a saved DAG as a new run; prints the run id."""
    run = client.submit_saved_dag(name)
    click.echo(run.id)
    if wait:
        record = run.wait()
        if record.state != "SUCCEEDED":
            click.echo(f"titan-runtime: run {record.id} {record.state}: {record.reason}", err=True)
        sys.exit(_run_exit_code(record))
