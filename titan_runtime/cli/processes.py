"""The control plane's processes: `up` (a master and local workers) and `master`."""

from __future__ import annotations

import asyncio
import logging
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from titan_runtime import config, eventloop
from titan_runtime.cli.options import (
    F,
    check_min_free,
    data_dir_option,
    fail,
    friendly_errors,
    log_format_option,
    parse_pairs,
    parse_tags,
    setup_logging,
    store_option,
)
from titan_runtime.cli.tls import master_tls_options, server_tls
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
        callback=check_min_free,
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


def _metrics_options(fn: F) -> F:
    """--metrics-port and --metrics-bind, shared by `master` and `up` (docs/metrics.md)."""
    fn = click.option(
        "--metrics-bind",
        default="127.0.0.1",
        show_default=True,
        help="Address the metrics endpoint listens on (it has no authentication: loopback unless you mean it).",
    )(fn)
    return click.option(
        "--metrics-port",
        type=click.IntRange(min=0, max=65535),
        default=None,
        help="Serve Prometheus metrics at http://BIND:PORT/metrics (0: any free port, written to the "
        "data dir's master.json) [default: off].",
    )(fn)


def _say(message: str, log_format: str) -> None:
    """A line on `up`'s stderr: a log record when it logs JSON, so that its stderr stays JSON lines."""
    if log_format == "json":
        logging.getLogger("titan.up").info("%s", message)
    else:
        click.echo(message, err=True)


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
@store_option
@click.option("--no-dashboard", is_flag=True, help="Do not serve the web dashboard.")
@click.option(
    "--dashboard-port",
    type=click.IntRange(0, 65535),
    default=9091,
    show_default=True,
    help="Port of the dashboard, on 127.0.0.1 (0: any free port).",
)
@_master_limit_options
@master_tls_options
@_cluster_option
@_metrics_options
@log_format_option
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
    no_dashboard: bool,
    dashboard_port: int,
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
    metrics_port: int | None,
    metrics_bind: str,
    log_format: str,
    verbose: bool,
) -> None:
    """Start a master and local workers; Ctrl-C (or SIGTERM) stops them all.

    With --cluster FILE, the file's pools are autoscaled (and --workers defaults to 0).
    """
    from titan_runtime.local import ClusterStartError, LocalCluster

    setup_logging(verbose, log_format)
    cluster_config = None
    master_settings: dict[str, Any] = {"metrics_port": metrics_port, "metrics_bind": metrics_bind}
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
        keys = ("heartbeat_interval", "lease_timeout", "min_free", "metrics_port", "metrics_bind")
        master_settings.update(_file_settings(cluster_config, keys))
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
        log_format=log_format,
    )
    try:
        cluster.start()
    except ClusterStartError as exc:
        fail(str(exc))
    board = None if no_dashboard else _start_dashboard(cluster, dashboard_port)
    try:
        click.echo(f"Titan {__version__} is up: master at {cluster.address}, {n_workers} local worker(s).")
        if cluster_config is not None:
            pools = ", ".join(
                f"{p.name} ({p.spec.provider}, {p.spec.min}-{p.spec.max})" for p in cluster_config.pools
            )
            click.echo(f"Autoscaled pools: {pools}; see `titan-runtime autoscaler status`.")
        click.echo(f"Token: {cluster.token_path} (clients on this machine read it from there)")
        if cluster.metrics_address:
            click.echo(f"Metrics: http://{cluster.metrics_address}/metrics")
        if board is not None:
            click.echo(f"Dashboard: {board.url} (sign in with the token)")
        # Clients find this master through the data dir (its master.json): name it unless it is theirs too.
        where = f" --data-dir {shlex.quote(str(directory))}" if data_dir is not None else ""
        click.echo(f"Try: titan-runtime submit{where} --wait -- echo hello    Stop with Ctrl-C.")
        sys.stdout.flush()
        stop.wait()
        _say("Stopping: workers first, then the master...", log_format)
    finally:
        if board is not None:
            board.stop()
        cluster.stop()
    if cluster.failure:
        fail(f"{cluster.failure}; what was acknowledged is in {directory}: fix the cause and start it again")
    _say("Stopped.", log_format)


@click.command()
@click.option(
    "--port", default=config.DEFAULT_PORT, show_default=True, help="Port to listen on (0: any free port)."
)
@click.option(
    "--bind", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for other hosts)."
)
@data_dir_option
@store_option
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
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0.5, max=600),
    default=3.0,
    show_default=True,
    help="With a PostgreSQL store, which masters may share: seconds the leader's lease lasts unrenewed "
    "(renewed every third of it); a standby takes over that long after the leader dies (docs/ha.md).",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where jobs' logs and artifacts are kept [default: the data dir]. Standby masters share "
    "one (a shared mount), so that the leader serves what ran under the one before (docs/ha.md).",
)
@click.option(
    "--advertise",
    metavar="HOST:PORT",
    default="",
    help="With standby masters: where other hosts reach this master, which a standby tells the clients "
    "and workers that dial it [default: the bound address; this host's name when bound to every address].",
)
@_master_limit_options
@master_tls_options
@_cluster_option
@_metrics_options
@log_format_option
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
    lease_ttl: float,
    output_dir: Path | None,
    advertise: str,
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
    metrics_port: int | None,
    metrics_bind: str,
    log_format: str,
    verbose: bool,
) -> None:
    """Run the master (control plane) in the foreground; with --cluster FILE, autoscale its pools.
    On a PostgreSQL store shared with other masters, it waits as a standby until it holds the
    store's lease (docs/ha.md)."""
    from titan_runtime.master.server import MasterConfig, MasterServer

    setup_logging(verbose, log_format)
    cluster_config = None
    file_limits = None
    if cluster_file is not None:
        cluster_config = _load_cluster(cluster_file)
        keys = ("port", "bind", "store", "heartbeat_interval", "lease_timeout", "min_free")
        settings = _file_settings(cluster_config, (*keys, "metrics_port", "metrics_bind"))
        min_free = settings.get("min_free", min_free)
        metrics_port = settings.get("metrics_port", metrics_port)
        metrics_bind = settings.get("metrics_bind", metrics_bind)
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
        metrics_port=metrics_port,
        metrics_bind=metrics_bind,
        lease_ttl=lease_ttl,
        output_dir=output_dir,
        advertise=config.join_host_port(*config.split_host_port(advertise)) if advertise else "",
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


def _start_dashboard(cluster: Any, port: int) -> Any:
    """The dashboard beside `up`'s cluster, on loopback, in a thread of this process; None (and a
    line saying why) when it cannot serve: the cluster runs either way."""
    try:
        from titan_runtime.dashboard.server import DashboardError, start_in_thread
        from titan_runtime.dashboard.settings import DashboardSettings
    except ImportError as exc:
        click.echo(
            f"Dashboard: not installed ({exc.name} is missing): pip install 'titan-runtime[dashboard]', "
            "or --no-dashboard",
            err=True,
        )
        return None
    tls = cluster.server.local_tls if cluster.server is not None else None
    settings = DashboardSettings(
        address=cluster.address,
        token=cluster.token,
        tls_ca=tls.ca if tls else None,
        tls_cert=(tls.cert or None) if tls else None,
        tls_key=(tls.key or None) if tls else None,
    )
    try:
        return start_in_thread(settings, port=port)
    except (DashboardError, OSError) as exc:
        click.echo(
            f"Dashboard: not started on port {port}: {exc} (--dashboard-port 0 picks a free one)", err=True
        )
        return None
