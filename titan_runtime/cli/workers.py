"""A worker: `worker` (the process that runs jobs, and `worker drain`) and `workers` (the listing)."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click

from titan_runtime import config, eventloop
from titan_runtime.cli.options import (
    check_min_free,
    client_options,
    data_dir_option,
    fail,
    friendly_errors,
    log_format_option,
    parse_offer,
    parse_tags,
    setup_logging,
    tls_options,
)
from titan_runtime.cli.output import print_table
from titan_runtime.client.sync import TitanClient
from titan_runtime.core.resources import format_memory


@click.group(invoke_without_command=True)
@click.option(
    "--master",
    "master_address",
    default=None,
    help="The master's HOST:PORT (required to run a worker); several, comma-separated, for masters "
    "sharing a PostgreSQL store: it dials the next when one fails (docs/ha.md).",
)
@click.option("--tags", default="", help="Capabilities, comma-separated (GPU is added when it has GPUs).")
@click.option("--slots", type=int, default=None, help="Jobs run at once [default: CPU count].")
@click.option(
    "--cpus", type=int, default=None, help="CPUs jobs may ask for (resources.cpus) [default: detected]."
)
@click.option(
    "--memory",
    default=None,
    help="Memory jobs may ask for (resources.memory), e.g. 16G [default: the machine's total].",
)
@click.option(
    "--gpus",
    default=None,
    help="GPU device ids jobs are given, e.g. 0,1, or none [default: what NVML or nvidia-smi finds].",
)
@click.option(
    "--token",
    envvar="TITAN_TOKEN",
    help="The cluster token or a named one (`token create`) [env TITAN_TOKEN; default: DATA_DIR/token].",
)
@click.option(
    "--token-fd",
    type=int,
    default=None,
    help="Read the token from this inherited file descriptor (how `up` and local pools pass it, "
    "never in the worker's environment).",
)
@click.option("--name", default=None, help="Worker name [default: host name].")
@data_dir_option
@click.option(
    "--work-dir", type=click.Path(file_okay=False, path_type=Path), help="Workspaces, spool and cache."
)
@click.option(
    "--kill-grace", default=10.0, show_default=True, help="Seconds from SIGTERM to SIGKILL for a job."
)
@click.option(
    "--drain-timeout", default=60.0, show_default=True, help="On SIGTERM, seconds running jobs get to finish."
)
@click.option("--keep-workspaces", is_flag=True, help="Keep each attempt's workspace after it ends.")
@click.option(
    "--python-launcher",
    type=click.Choice(["fork", "exec"]),
    default="fork",
    show_default=True,
    envvar="TITAN_PYTHON_LAUNCHER",
    help="fork: start Python jobs (`{python} script.py`, `{python} -m module`) from a Python that "
    "has already started (~1 ms, not ~17); exec: a new interpreter per job [env TITAN_PYTHON_LAUNCHER].",
)
@click.option(
    "--preload",
    default="",
    metavar="PACKAGES",
    envvar="TITAN_PRELOAD",
    callback=lambda _ctx, _param, value: parse_preload(value),
    help="Comma-separated packages a second launcher imports once, for `{python} -m` jobs of them "
    "(e.g. dagster,titan_dagster: Dagster steps start without importing Dagster) [env TITAN_PRELOAD].",
)
@click.option(
    "--port-range", default="20000-32000", show_default=True, help="Ports leased to services, LOW-HIGH."
)
@click.option(
    "--advertise-host",
    default=None,
    help="Address others reach this worker's services at [default: route to master].",
)
@tls_options
@click.option(
    "--min-free",
    default="1G,5%",
    show_default=True,
    callback=check_min_free,
    help="Free space the work dir's disk keeps: below it, job output is cut (with a note). "
    'Bytes ("2G"), a share ("5%") or both (the smaller applies); 0 turns it off.',
)
@click.option(
    "--max-project-size",
    default="10G",
    show_default=True,
    help="Largest size a project archive may unpack to in a workspace.",
)
@click.option(
    "--max-project-files", default=100_000, show_default=True, help="Most files a project archive may hold."
)
@click.option(
    "--job-user",
    default=None,
    envvar="TITAN_JOB_USER",
    help="Run jobs as this user (name or uid), with its own HOME and no access to the worker's "
    "files; the worker must be started as root [env TITAN_JOB_USER].",
)
@click.option("--pool", default="", help="The autoscaled pool it belongs to (set by the pool's provider).")
@click.option("--provider", default="", hidden=True)
@click.option("--launch-id", default="", hidden=True)
@click.option("--exit-with-parent", type=int, default=0, hidden=True)
@log_format_option
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
@friendly_errors
def worker(
    ctx: click.Context,
    master_address: str | None,
    tags: str,
    slots: int | None,
    cpus: int | None,
    memory: str | None,
    gpus: str | None,
    token: str | None,
    token_fd: int | None,
    name: str | None,
    data_dir: Path | None,
    work_dir: Path | None,
    kill_grace: float,
    drain_timeout: float,
    keep_workspaces: bool,
    python_launcher: str,
    preload: tuple[str, ...],
    port_range: str,
    advertise_host: str | None,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    min_free: str,
    max_project_size: str,
    max_project_files: int,
    job_user: str | None,
    pool: str,
    provider: str,
    launch_id: str,
    exit_with_parent: int,
    log_format: str,
    verbose: bool,
) -> None:
    """Run a worker that dials out to the master and runs what it is assigned.

    \b
    SIGTERM drains it: no new work, running jobs get --drain-timeout to finish, the rest are handed
    back to the master (which runs them elsewhere), then it exits 0. SIGINT (Ctrl-C) or a second
    signal hands everything back at once.

    `titan-runtime worker drain WORKER` asks a running worker to drain through the master.
    """
    if ctx.invoked_subcommand is not None:
        return
    from titan_runtime.core.limits import parse_size
    from titan_runtime.tls import client_tls
    from titan_runtime.worker import capabilities
    from titan_runtime.worker.agent import WorkerConfig, run_worker
    from titan_runtime.worker.hardening import exit_with_parent as arm_parent_death
    from titan_runtime.worker.hardening import make_undumpable
    from titan_runtime.worker.jobuser import JobUser, JobUserError
    from titan_runtime.worker.project import ProjectLimits

    setup_logging(verbose, log_format)
    if exit_with_parent:
        arm_parent_death(exit_with_parent)
    if not master_address:
        raise click.UsageError("Missing option '--master' (the master's HOST:PORT).", ctx)
    for one in master_address.split(","):  # several: masters sharing a store (docs/ha.md)
        config.split_host_port(one.strip())
    if slots is not None and slots < 1:
        raise click.BadParameter("must be at least 1", param_hint="--slots")
    cpus, memory_mb, gpu_ids = parse_offer(cpus, memory, gpus)
    try:
        project_limits = ProjectLimits(parse_size(max_project_size), max_project_files)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-project-size") from None
    runs_as: JobUser | None = None
    if job_user:
        try:
            runs_as = JobUser.resolve(job_user)
        except JobUserError as exc:
            fail(str(exc), 2)
        assert runs_as is not None
        why = runs_as.cannot_run(sys.executable)
        if why:
            logging.getLogger("titan.worker").warning(
                "jobs run as %s cannot run this worker's Python (%s): %s; .py jobs will fail",
                runs_as.name,
                sys.executable,
                why,
            )
    make_undumpable()  # before the token is read: nothing of this process is open to its jobs
    resolved_token = config.read_token_fd(token_fd) if token_fd is not None else config.token(token, data_dir)
    if not resolved_token:
        fail(
            f"no token: pass --token or set TITAN_TOKEN (the master keeps it in {config.data_dir(data_dir)}/token "
            "on its host)"
        )
    worker_tls = client_tls(tls_ca, tls_cert, tls_key)
    if worker_tls is not None:
        worker_tls.credentials()  # the files are read now: a wrong path is said before anything starts
    worker_name = name or capabilities.hostname()
    directory = work_dir or config.data_dir(data_dir) / "workers" / worker_name
    config.writable_dir(directory, "work dir")
    cfg = WorkerConfig(
        master=master_address,
        token=resolved_token or "",
        name=worker_name,
        work_dir=directory,
        tags=frozenset(parse_tags(tags)),
        slots=slots or capabilities.cpu_count(),
        kill_grace=kill_grace,
        drain_timeout=drain_timeout,
        keep_workspaces=keep_workspaces,
        python_launcher=python_launcher,
        preload=preload,
        port_range=_parse_port_range(port_range),
        advertise_host=advertise_host or "",
        tls=worker_tls,
        min_free=min_free,
        project_limits=project_limits,
        pool=pool,
        provider=provider,
        launch_id=launch_id,
        job_user=runs_as,
        cpus=cpus,
        memory_mb=memory_mb,
        gpus=gpu_ids,
    )
    sys.exit(eventloop.run(run_worker(cfg)))


def parse_preload(value: str) -> tuple[str, ...]:
    """--preload: module names, comma-separated, each as `python -m` would take it."""
    from titan_runtime.core.names import MODULE_PATTERN

    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    wrong = [n for n in names if not MODULE_PATTERN.match(n)]
    if wrong:
        raise click.BadParameter(
            f"{', '.join(map(repr, wrong))}: not module names (e.g. dagster,titan_dagster)"
        )
    return names


def _parse_port_range(value: str) -> tuple[int, int]:
    low, sep, high = value.partition("-")
    if not sep or not low.isdigit() or not high.isdigit() or not 0 < int(low) <= int(high) < 65536:
        raise click.BadParameter(
            f"{value!r} is not LOW-HIGH, for example 20000-32000", param_hint="--port-range"
        )
    return int(low), int(high)


@worker.command("drain")
@click.argument("worker_ref", metavar="WORKER")
@click.option("--deadline", type=float, default=0.0, help="Seconds running jobs get [default: the worker's].")
@client_options
def worker_drain(client: TitanClient, worker_ref: str, deadline: float) -> None:
    """Drain a worker (by name or id): no new work, running jobs finish, then it exits."""
    record = client.drain_worker(worker_ref, deadline)
    click.echo(
        f"draining {record.name} ({record.id}); it exits once its {record.running} running job(s) are done"
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@client_options
def workers(client: TitanClient, as_json: bool) -> None:
    """List the workers the master knows: what their running jobs hold of what each offers
    (slots, CPUs, memory, GPUs) and how each enforces a job's memory limit."""
    records = client.list_workers()
    if as_json:
        click.echo(json.dumps([w.to_dict() for w in records], indent=2))
        return
    if not records:
        click.echo("No workers. Start one with: titan-runtime worker --master HOST:PORT")
        return
    now = time.time()
    print_table(
        [
            "NAME",
            "ID",
            "STATE",
            "HOST",
            "PID",
            "TAGS",
            "POOL",
            "RUNNING",
            "CPUS",
            "MEMORY",
            "GPUS",
            "CPU%",
            "MEM%",
            "SEEN",
        ],
        [
            [
                w.name,
                w.id,
                w.state,
                w.host,
                str(w.pid),
                ",".join(w.tags) or "-",
                w.pool or "-",
                f"{w.running}/{w.slots}",
                f"{w.cpus_used:g}/{w.cpu_count}",
                f"{format_memory(w.memory_used_mb)}/{format_memory(w.memory_bytes >> 20)}"
                + (f" ({w.memory_enforcement})" if w.memory_enforcement else ""),
                f"{len(w.gpus_used)}/{len(w.gpus)}" if w.gpus else "-",
                f"{w.cpu_percent:.0f}",
                f"{w.memory_percent:.0f}",
                f"{max(0.0, now - w.last_heartbeat):.0f}s ago",
            ]
            for w in records
        ],
    )
