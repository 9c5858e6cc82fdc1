"""One job at a time: `submit`, `status`, `logs`, `cancel`, `result`."""

from __future__ import annotations

import json
import sys
from collections import deque
from pathlib import Path

import click

from titan_runtime.cli.options import (
    EXIT_CANCELLED,
    client_options,
    fail,
    parse_pairs,
    parse_tags,
    reconnect_option,
    since_option,
)
from titan_runtime.cli.output import LineWriter, exit_code_of, fmt_duration, fmt_time, warn_if_unplaceable
from titan_runtime.client import functions
from titan_runtime.client.job import TitanJob
from titan_runtime.client.records import LogLine
from titan_runtime.client.sync import TitanClient


class _SubmitCommand(click.Command):
    """Tells `submit FILE ARGS` from `submit -- CMD ARGS`: command mode when `--` comes before any positional."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {
            o for p in self.params if isinstance(p, click.Option) and not p.is_flag for o in p.opts
        }
        command_mode = False
        skip = False
        for token in args:
            if skip:
                skip = False
                continue
            if token == "--":
                command_mode = True
                break
            if token in takes_value:
                skip = True
            elif not token.startswith("-") or token == "-":
                break
        ctx.meta["command_mode"] = command_mode
        return super().parse_args(ctx, args)


@click.command(cls=_SubmitCommand, context_settings={"allow_interspersed_args": False})
@click.option("--tag", "tags", multiple=True, help="Run only on workers with this tag (repeatable).")
@click.option("--priority", default=1, show_default=True, help="Higher runs first.")
@click.option(
    "--timeout", type=float, default=None, help="Kill the job (and its children) after this many seconds."
)
@click.option("--env", "env_pairs", multiple=True, help="Environment variable KEY=VALUE (repeatable).")
@click.option("--retries", type=int, default=None, help="Retries after a failed attempt.")
@click.option("--id", "job_id", default=None, help="Job id [default: the script or program name].")
@click.option("--node", default=None, help="Run on this worker (name or id).")
@click.option("--slots", type=click.IntRange(min=1), default=None, help="Slots it holds [default: 1].")
@click.option("--cpus", default=None, help="CPUs it holds while it runs, e.g. 2 or 0.5 (resources.cpus).")
@click.option(
    "--memory", default=None, help="Memory it holds and may use, e.g. 512M or 8G (resources.memory)."
)
@click.option(
    "--gpus", default=None, help="GPUs it is given (resources.gpus; it sees them in CUDA_VISIBLE_DEVICES)."
)
@click.option(
    "--fail-if-unplaceable",
    "unplaceable",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Fail the job if, SECONDS after it is ready, no connected worker can run it [default: wait].",
)
@click.option("--wait", is_flag=True, help="Wait for the end; exit with the job's exit code.")
@click.option(
    "--follow", "-f", is_flag=True, help="Stream the output while it runs; exit with the job's exit code."
)
@click.argument("program", nargs=1, required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@reconnect_option
@client_options
@click.pass_context
def submit(
    ctx: click.Context,
    client: TitanClient,
    tags: tuple[str, ...],
    priority: int,
    timeout: float | None,
    env_pairs: tuple[str, ...],
    retries: int | None,
    job_id: str | None,
    node: str | None,
    slots: int | None,
    cpus: str | None,
    memory: str | None,
    gpus: str | None,
    unplaceable: float | None,
    wait: bool,
    follow: bool,
    program: str | None,
    args: tuple[str, ...],
) -> None:
    """Run a script (FILE [ARGS...]) or a command (-- CMD [ARGS...]) on a worker; print its id.

    \b
    .py files run with the worker's Python (unbuffered), .sh with bash, other files directly.
    Exit codes with --wait/--follow: the job's own; 124 on timeout; 130 when cancelled;
    128+N when killed by signal N; 1 when it could not run (lost, could not start).
    """
    if program is None:
        fail("nothing to run: give a script (submit FILE [ARGS]) or a command (submit -- CMD [ARGS])", 2)
    if ctx.meta.get("command_mode"):
        if not program.strip():
            fail("empty command: give the program to run after --", 2)
        job = TitanJob(job_id=job_id, command=[program, *args])
    else:
        path = Path(program)
        if not path.is_file():
            fail(
                f"script {program} does not exist; to run a command instead, put it after --: submit -- {program}",
                2,
            )
        job = TitanJob(job_id=job_id, filename=str(path), args=list(args))
    for tag in tags:
        parse_tags(tag)
    job.tags = list(tags)
    job.priority = priority
    job.timeout = timeout
    job.env = parse_pairs(env_pairs, "--env")
    job.retries = retries
    job.node = node
    job.slots = slots or 1
    given = {"cpus": cpus, "memory": memory, "gpus": gpus}
    job.resources = {key: value for key, value in given.items() if value is not None} or None
    job.fail_if_unplaceable = unplaceable
    run_id = client.submit_job(job)
    click.echo(run_id, err=follow)
    if not (wait or follow):
        return
    warning = warn_if_unplaceable(client, run_id)
    try:
        if follow:
            writer = LineWriter(live=True)
            for line in client.follow_logs(run_id):
                writer.write(line)
        record = client.wait(run_id)
    except KeyboardInterrupt:
        click.echo(f"\nStill running; cancel it with: titan-runtime cancel {run_id}", err=True)
        sys.exit(EXIT_CANCELLED)
    finally:
        warning.cancel()
    code = exit_code_of(record)
    if code:
        click.echo(f"titan-runtime: job {record.ref} {record.state}: {record.reason}", err=True)
    sys.exit(code)


@click.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@client_options
def status(client: TitanClient, job: str, as_json: bool) -> None:
    """Show a job's state (JOB is the id submit printed, or RUN/JOB)."""
    record = client.get_job(job)
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
        return
    rows = [
        ["job", record.ref],
        ["state", record.state],
        ["reason", record.reason or "-"],
        ["attempt", str(record.attempt)],
        ["worker", f"{record.worker_name} ({record.worker_id})" if record.worker_id else "-"],
        ["exit code", "-" if record.exit_code is None else str(record.exit_code)],
        ["created", fmt_time(record.created_at)],
        ["started", fmt_time(record.started_at)],
        ["ended", fmt_time(record.ended_at)],
        ["duration", fmt_duration(record)],
    ]
    if record.attempts and record.attempts[-1].gpus:
        rows.append(["gpus", ",".join(record.attempts[-1].gpus)])
    for key, value in rows:
        click.echo(f"{key:<10} {value}")


@click.command()
@click.argument("job")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the job ends.")
@click.option("--attempt", type=int, default=None, help="Attempt number [default: the latest].")
@click.option(
    "--raw",
    is_flag=True,
    help="The exact bytes the job wrote (no newline added to an unended last line, no Titan notes).",
)
@click.option(
    "--tail",
    type=click.IntRange(min=0),
    default=None,
    help="Only the last N lines (then, with -f, what follows).",
)
@since_option("lines printed")
@reconnect_option
@client_options
def logs(
    client: TitanClient,
    job: str,
    follow: bool,
    attempt: int | None,
    raw: bool,
    tail: int | None,
    since: float,
) -> None:
    """Print a job's output (stdout lines to stdout, stderr lines to stderr), byte for byte.

    The output streams through: a log of any size is printed in little memory."""
    writer = LineWriter(raw=raw, live=follow)
    try:
        offset = 0
        if tail is not None:  # the last lines so far (only those held), then follow from there
            last: deque[LogLine] = deque(maxlen=tail)
            for line in client.follow_logs(job, attempt=attempt, follow=False):
                if line.timestamp >= since:
                    last.append(line)
                offset = line.next_offset
            for line in last:
                writer.write(line)
            if not follow:
                return
        for line in client.follow_logs(job, offset=offset, attempt=attempt, follow=follow):
            if line.timestamp >= since:
                writer.write(line)
    except KeyboardInterrupt:
        sys.exit(EXIT_CANCELLED)
    finally:
        writer.close()


@click.command()
@click.argument("ref")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Return once the processes are gone.")
@client_options
def cancel(client: TitanClient, ref: str, wait: bool) -> None:
    """Cancel a job (and what depends on it) or a whole run; its process trees get SIGTERM, then SIGKILL."""
    cancelled = client.cancel(ref, wait=wait)
    if not cancelled:
        click.echo(f"{ref}: nothing to cancel (already finished)")
    for item in cancelled:
        click.echo(f"cancelled {item}")


@click.command()
@click.argument("job")
@client_options
def result(client: TitanClient, job: str) -> None:
    """Print a job's result (the JSON it passed to task.set_result)."""
    value = client.get_result(job)
    if value is None and not client.get_job(job).has_result:
        fail(f"{job} has no result (it did not call task.set_result)")
    click.echo(json.dumps(value, indent=2))
    if functions.is_envelope(value):  # a function task's: say what it holds, on stderr
        click.echo(f"{functions.describe(value)}; in Python: client.function_result({job!r})", err=True)
