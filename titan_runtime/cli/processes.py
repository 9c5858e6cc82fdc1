"""The cluster's processes: `up`, `master`, `worker` (and `worker drain`), `workers`."""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from titan_runtime import config, eventloop
from titan_runtime.cli.options import (
    F,
    client_options,
    data_dir_option,
    fail,
    friendly_errors,
    parse_pairs,
    parse_tags,
    setup_logging,
    tls_options,
)
from titan_runtime.cli.output import print_table
from titan_runtime.cli.tls import master_tls_options, server_tls
from titan_runtime.client.sync import TitanClient
from titan_runtime.version import __version__


def _cluster_option(fn: F) -> F:
    return click.option(
        "--cluster",
        "cluster_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="A cluster.yaml: master settings and the worker pools to autoscale (docs/scaling.md).",
    )(fn)


def _master_limit_options(fn: F) -> F:
    """--limit NAME=VALUE, --retention NAME=VALUE (repeatable) and --min-free, shared by `master` and `up`."""
    from titan_runtime.core.limits import Limits
    from titan_runtime.core.retention import Retention
    from titan_runtime.diskspace import DEFAULT_MIN_FREE

    fn = click.option(
        "--retention",
        "retention_pairs",
        multiple=True,
        metavar="NAME=VALUE",
        help=f"What history is kept (repeatable): {', '.join(Retention.names())}; e.g. runs_days=7, "
        "logs_size=5G. Defaults: runs 30 days, logs and artifacts 30 days and 20 GiB. See docs/retention.md.",
    )(fn)

    fn = click.option(
        "--min-free",
        default=DEFAULT_MIN_FREE,
        show_default=True,
        callback=_check_min_free,
        help="Free space the data dir's disk keeps: below it submissions are refused and job output "
        'is cut. Bytes ("2G"), a share ("5%") or both (the smaller applies); 0 turns it off.',
    )(fn)
    return click.option(
        "--limit",
        "limit_pairs",
        multiple=True,
        metavar="NAME=VALUE",
        help=f"Raise or lower a limit on what clients may ask (repeatable): {', '.join(Limits.names())}. "
        "See docs/operations.md.",
    )(fn)


def _check_min_free(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from titan_runtime.diskspace import MinFreeError, parse_min_free

    try:
        parse_min_free(value)
    except MinFreeError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _settings(option: str, pairs: tuple[str, ...], file_settings: dict[str, Any] | None, parse: Any) -> Any:
    """The cluster file's settings, then each NAME=VALUE of `option` over them, read by `parse`."""
    settings: dict[str, object] = {**(file_settings or {}), **parse_pairs(pairs, option, strip=True)}
    try:
        return parse(settings)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _limits(pairs: tuple[str, ...], file_settings: dict[str, Any] | None = None) -> Any:
    """The master's Limits: the cluster file's `limits:`, then each --limit NAME=VALUE over them."""
    from titan_runtime.core.limits import limits_from

    return _settings("--limit", pairs, file_settings, limits_from)


def _retention(pairs: tuple[str, ...], file_settings: dict[str, Any] | None = None) -> Any:
    """The master's Retention: the cluster file's `retention:`, then each --retention NAME=VALUE."""
    from titan_runtime.core.retention import retention_from

    return _settings("--retention", pairs, file_settings, retention_from)


def _load_cluster(path: Path) -> Any:
    from titan_runtime.clusterconfig import load_cluster_file

    return load_cluster_file(path)


def _is_default(param: str) -> bool:
    source = click.get_current_context().get_parameter_source(param)
    return source in (None, click.core.ParameterSource.DEFAULT)


def _file_settings(cluster: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The cluster file's `master:` settings among `keys`, for options not given on the command line."""
    return {k: v for k, v in cluster.master.items() if k in keys and _is_default(k)}


@click.command()
@click.option(
    "--port", default=config.DEFAULT_PORT, show_default=True, help="Port of the master (0: any free port)."
)
@click.option(
    "--bind", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for other hosts)."
)
@data_dir_option
@click.option("--workers", "n_workers", default=2, show_default=True, help="Local workers to start.")
@click.option("--worker-tags", default="", help="Tags of the local workers, comma-separated (e.g. GPU,ssd).")
@click.option("--slots", type=int, default=None, help="Slots per worker [default: its CPU count].")
@click.option("--store", type=click.Choice(["sqlite", "memory"]), default="sqlite", show_default=True)
@_master_limit_options
@master_tls_options
@_cluster_option
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@friendly_errors
def up(
    port: int,
    bind: str,
    data_dir: Path | None,
    n_workers: int,
    worker_tags: str,
    slots: int | None,
    store: str,
    min_free: str,
    limit_pairs: tuple[str, ...],
    retention_pairs: tuple[str, ...],
    tls_dir: Path | None,
    server_tls_cert: str | None,
    server_tls_key: str | None,
    server_tls_ca: str | None,
    require_client_cert: bool,
    insecure: bool,
    cluster_file: Path | None,
    verbose: bool,
) -> None:
    """Start a master and local workers; Ctrl-C (or SIGTERM) stops them all.

    With --cluster FILE, the file's pools are autoscaled (and --workers defaults to 0).
    """
    from titan_runtime.local import ClusterStartError, LocalCluster

    setup_logging(verbose)
    cluster_config = None
    master_settings: dict[str, Any] = {}
    if cluster_file is not None:
        cluster_config = _load_cluster(cluster_file)
        settings = _file_settings(cluster_config, ("port", "bind", "store"))
        port, bind, store = (
            settings.get("port", port),
            settings.get("bind", bind),
            settings.get("store", store),
        )
        if _is_default("n_workers"):
            n_workers = 0
        master_settings = _file_settings(cluster_config, ("heartbeat_interval", "lease_timeout", "min_free"))
    master_settings["limits"] = _limits(
        limit_pairs, cluster_config.master.get("limits") if cluster_config else None
    )
    master_settings["retention"] = _retention(
        retention_pairs, cluster_config.master.get("retention") if cluster_config else None
    )
    master_settings.setdefault("min_free", min_free)
    master_settings["tls"] = server_tls(
        tls_dir, server_tls_cert, server_tls_key, server_tls_ca, require_client_cert
    )
    master_settings["insecure"] = insecure
    if n_workers < 0:
        raise click.BadParameter("must be 0 or more", param_hint="--workers")
    if slots is not None and slots < 1:
        raise click.BadParameter("must be at least 1", param_hint="--slots")
    tags = parse_tags(worker_tags)
    directory = config.writable_dir(config.data_dir(data_dir))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    cluster = LocalCluster(
        directory,
        bind=bind,
        port=port,
        workers=n_workers,
        worker_tags=tags,
        slots=slots,
        store=store,
        master_config=master_settings,
        cluster=cluster_config,
        on_master_exit=stop.set,
    )
    try:
        cluster.start()
    except ClusterStartError as exc:
        fail(str(exc))
    try:
        click.echo(f"Titan {__version__} is up: master at {cluster.address}, {n_workers} local worker(s).")
        if cluster_config is not None:
            pools = ", ".join(
                f"{p.name} ({p.spec.provider}, {p.spec.min}-{p.spec.max})" for p in cluster_config.pools
            )
            click.echo(f"Autoscaled pools: {pools}; see `titan-runtime autoscaler status`.")
        click.echo(f"Token: {cluster.token_path} (clients on this machine read it from there)")
        # Clients find this master through the data dir (its master.json): name it unless it is theirs too.
        where = f" --data-dir {shlex.quote(str(directory))}" if data_dir is not None else ""
        click.echo(f"Try: titan-runtime submit{where} --wait -- echo hello    Stop with Ctrl-C.")
        sys.stdout.flush()
        stop.wait()
        click.echo("Stopping: workers first, then the master...", err=True)
    finally:
        cluster.stop()
    if cluster.failure:
        fail(f"{cluster.failure}; what was acknowledged is in {directory}: fix the cause and start it again")
    click.echo("Stopped.", err=True)


@click.command()
@click.option(
    "--port", default=config.DEFAULT_PORT, show_default=True, help="Port to listen on (0: any free port)."
)
@click.option(
    "--bind", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for other hosts)."
)
@data_dir_option
@click.option("--store", type=click.Choice(["sqlite", "memory"]), default="sqlite", show_default=True)
@click.option(
    "--heartbeat-interval", default=1.0, show_default=True, help="Seconds between worker heartbeats."
)
@click.option(
    "--lease-timeout", default=10.0, show_default=True, help="Seconds of silence before a worker is dead."
)
@click.option(
    "--fsync/--no-fsync",
    default=True,
    show_default=True,
    help="fsync every commit (survives power loss); --no-fsync survives master crashes only, but is faster.",
)
@click.option(
    "--credential-grace",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds a job's credential still works after its run ended.",
)
@click.option(
    "--auth-delay-max",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Longest wait before answering a host's repeated failed authentications (0: answer at once).",
)
@_master_limit_options
@master_tls_options
@_cluster_option
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@friendly_errors
def master(
    port: int,
    bind: str,
    data_dir: Path | None,
    store: str,
    heartbeat_interval: float,
    lease_timeout: float,
    fsync: bool,
    credential_grace: float,
    auth_delay_max: float,
    min_free: str,
    limit_pairs: tuple[str, ...],
    retention_pairs: tuple[str, ...],
    tls_dir: Path | None,
    server_tls_cert: str | None,
    server_tls_key: str | None,
    server_tls_ca: str | None,
    require_client_cert: bool,
    insecure: bool,
    cluster_file: Path | None,
    verbose: bool,
) -> None:
    """Run the master (control plane) in the foreground; with --cluster FILE, autoscale its pools."""
    from titan_runtime.master.server import MasterConfig, MasterServer

    setup_logging(verbose)
    cluster_config = None
    file_limits = None
    if cluster_file is not None:
        cluster_config = _load_cluster(cluster_file)
        keys = ("port", "bind", "store", "heartbeat_interval", "lease_timeout", "min_free")
        settings = _file_settings(cluster_config, keys)
        min_free = settings.get("min_free", min_free)
        file_limits = cluster_config.master.get("limits")
        port, bind, store = (
            settings.get("port", port),
            settings.get("bind", bind),
            settings.get("store", store),
        )
        heartbeat_interval = settings.get("heartbeat_interval", heartbeat_interval)
        lease_timeout = settings.get("lease_timeout", lease_timeout)
    cfg = MasterConfig(
        data_dir=config.data_dir(data_dir),
        bind=bind,
        port=port,
        store=store,
        heartbeat_interval=heartbeat_interval,
        lease_timeout=lease_timeout,
        fsync=fsync,
        cluster=cluster_config,
        limits=_limits(limit_pairs, file_limits),
        retention=_retention(
            retention_pairs, cluster_config.master.get("retention") if cluster_config else None
        ),
        min_free=min_free,
        credential_grace=credential_grace,
        auth_delay_max=auth_delay_max,
        tls=server_tls(tls_dir, server_tls_cert, server_tls_key, server_tls_ca, require_client_cert),
        insecure=insecure,
    )

    async def serve() -> str:
        server = MasterServer(cfg)
        await server.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stopped.set)
        await server.stopped.wait()
        await server.stop()
        return server.failure

    failure = eventloop.run(serve())
    if failure:
        fail(f"{failure}; what was acknowledged is in {cfg.data_dir}: fix the cause and start it again")


@click.group(invoke_without_command=True)
@click.option(
    "--master", "master_address", default=None, help="The master's HOST:PORT (required to run a worker)."
)
@click.option(
    "--tags", default="", help="Capabilities, comma-separated (GPU is added when nvidia-smi finds one)."
)
@click.option("--slots", type=int, default=None, help="Jobs run at once [default: CPU count].")
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
    help="fork: start .py jobs from a Python that has already started (~1 ms, not ~17); "
    "exec: a new interpreter per job [env TITAN_PYTHON_LAUNCHER].",
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
    callback=_check_min_free,
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
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
@friendly_errors
def worker(
    ctx: click.Context,
    master_address: str | None,
    tags: str,
    slots: int | None,
    token: str | None,
    token_fd: int | None,
    name: str | None,
    data_dir: Path | None,
    work_dir: Path | None,
    kill_grace: float,
    drain_timeout: float,
    keep_workspaces: bool,
    python_launcher: str,
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

    setup_logging(verbose)
    if exit_with_parent:
        arm_parent_death(exit_with_parent)
    if not master_address:
        raise click.UsageError("Missing option '--master' (the master's HOST:PORT).", ctx)
    config.split_host_port(master_address)
    if slots is not None and slots < 1:
        raise click.BadParameter("must be at least 1", param_hint="--slots")
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
        port_range=_parse_port_range(port_range),
        advertise_host=advertise_host or "",
        tls=worker_tls,
        min_free=min_free,
        project_limits=project_limits,
        pool=pool,
        provider=provider,
        launch_id=launch_id,
        job_user=runs_as,
    )
    sys.exit(eventloop.run(run_worker(cfg)))


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
    """List the workers the master knows."""
    records = client.list_workers()
    if as_json:
        click.echo(json.dumps([w.to_dict() for w in records], indent=2))
        return
    if not records:
        click.echo("No workers. Start one with: titan-runtime worker --master HOST:PORT")
        return
    now = time.time()
    print_table(
        ["NAME", "ID", "STATE", "HOST", "PID", "TAGS", "POOL", "RUNNING", "CPU%", "MEM%", "SEEN"],
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
                f"{w.cpu_percent:.0f}",
                f"{w.memory_percent:.0f}",
                f"{max(0.0, now - w.last_heartbeat):.0f}s ago",
            ]
            for w in records
        ],
    )
