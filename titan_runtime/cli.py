"""`titan-runtime`: start a cluster, submit work, watch it, inspect it.

Client commands find the master through --address / TITAN_ADDRESS (TITAN_HOST/TITAN_PORT),
default 127.0.0.1:9090, and authenticate with --token / TITAN_TOKEN or the `token` file in the
data dir (--data-dir / TITAN_DATA_DIR, default ~/.titan). Errors print one line saying what was
wrong and what to do, and exit non-zero.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from titan_runtime import config, eventloop
from titan_runtime.cli_tls import certs, master_tls_options, server_tls
from titan_runtime.client.errors import TitanError
from titan_runtime.client.job import TitanJob
from titan_runtime.client.records import JobRecord, LogLine, RunRecord
from titan_runtime.client.sync import TitanClient
from titan_runtime.core.model import TAG_PATTERN
from titan_runtime.version import __version__

F = TypeVar("F", bound=Callable[..., Any])

EXIT_TIMEOUT = 124
EXIT_CANCELLED = 130


def fail(message: str, code: int = 1) -> None:
    click.echo(f"titan-runtime: error: {message}", err=True)
    sys.exit(code)


def friendly_errors(fn: F) -> F:
    """Turn SDK, configuration, store and system errors (a full disk) into one line on stderr and
    exit code 1; a reader that went away (`logs | head`) ends the command quietly."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from titan_runtime.store import StoreError
        from titan_runtime.tls import TlsError

        try:
            return fn(*args, **kwargs)
        except (TitanError, config.ConfigError, StoreError, TlsError) as exc:
            fail(str(exc))
        except TimeoutError as exc:
            fail(str(exc), EXIT_TIMEOUT)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush to
            sys.exit(1)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}")
        except KeyboardInterrupt:
            sys.exit(EXIT_CANCELLED)

    return wrapper  # type: ignore[return-value]


def reconnect_option(fn: F) -> F:
    """--reconnect-timeout, for the commands that wait on the master (put it above @client_options)."""
    return click.option(
        "--reconnect-timeout",
        type=click.FloatRange(min=0),
        envvar="TITAN_RECONNECT_TIMEOUT",
        default=config.DEFAULT_RECONNECT_TIMEOUT,
        show_default=True,
        help="Seconds to keep trying a master that went away (a restart) before failing; 0: fail at once "
        "[env TITAN_RECONNECT_TIMEOUT].",
    )(fn)


def tls_options(fn: F) -> F:
    """--tls-ca, --tls-cert, --tls-key: how a client or worker dials a master that serves TLS."""
    for name, env, what in (
        ("--tls-key", "TITAN_TLS_KEY", "Its key, for --tls-cert"),
        ("--tls-cert", "TITAN_TLS_CERT", "A client certificate, for a master that requires one"),
        ("--tls-ca", "TITAN_TLS_CA", "The cluster's CA certificate: dial the master with TLS"),
    ):
        fn = click.option(name, envvar=env, default=None, help=f"{what} [env {env}].")(fn)
    return fn


def client_options(fn: F) -> F:
    """--address, --token and --data-dir, resolved into a TitanClient passed as `client`.

    Commands without --reconnect-timeout fail at once when the master is unreachable, as a quick
    question should; those with it (see `reconnect_option`) ride out a restart."""

    @click.option(
        "--address",
        envvar="TITAN_ADDRESS",
        help="Master HOST:PORT [env TITAN_ADDRESS; default 127.0.0.1:9090].",
    )
    @click.option(
        "--token",
        envvar="TITAN_TOKEN",
        help="The cluster token or a named one (`token create`) [env TITAN_TOKEN; default: DATA_DIR/token].",
    )
    @click.option(
        "--data-dir",
        envvar="TITAN_DATA_DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="Where the token file is [env TITAN_DATA_DIR; default ~/.titan].",
    )
    @tls_options
    @functools.wraps(fn)
    @friendly_errors
    def wrapper(
        *args: Any,
        address: str | None,
        token: str | None,
        data_dir: Path | None,
        tls_ca: str | None,
        tls_cert: str | None,
        tls_key: str | None,
        **kwargs: Any,
    ) -> Any:
        if address:
            config.split_host_port(address)
        reconnect_timeout = kwargs.pop("reconnect_timeout", 0.0)
        with TitanClient(
            address=address,
            token=token,
            data_dir=str(data_dir) if data_dir else None,
            reconnect_timeout=reconnect_timeout,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
        ) as client:
            return fn(*args, client=client, **kwargs)

    return wrapper  # type: ignore[return-value]


def parse_tags(value: str | None) -> list[str]:
    tags = [t.strip() for t in (value or "").split(",") if t.strip()]
    for tag in tags:
        if not TAG_PATTERN.match(tag):
            raise click.BadParameter(f"invalid tag {tag!r}: use letters, digits, '_', '-', '.' or ':'")
    return tags


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def exit_code_of(job: JobRecord) -> int:
    """The exit code `submit --wait` returns for a finished job."""
    if job.state == "SUCCEEDED":
        return 0
    if job.state == "CANCELLED":
        return EXIT_CANCELLED
    last = job.attempts[-1] if job.attempts else None
    if last is not None and last.reason.startswith("timed out"):
        return EXIT_TIMEOUT
    if job.exit_code is not None and job.exit_code > 0:
        return min(job.exit_code, 255)
    if last is not None and last.signal:
        try:
            return 128 + signal.Signals[last.signal].value
        except KeyError:
            return 1
    return 1


def fmt_time(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"


def fmt_duration(job: JobRecord) -> str:
    if not job.started_at:
        return "-"
    end = job.ended_at or time.time()
    return f"{end - job.started_at:.2f}s"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=None, header_style="bold", pad_edge=False)
    for row in rows:
        table.add_row(*row)
    Console(soft_wrap=True).print(table)


class LineWriter:
    """Writes job output lines as bytes, each to the stream the job wrote it to.

    Without `raw`, each line ends with a newline and Titan's own notes are included; with it, the
    exact bytes the job wrote (an unended last line stays unended), and nothing else. `live`
    flushes every line (following a running job); otherwise only when the stream changes, so that
    a 50 MB log is not a million writes while stdout and stderr still interleave in order."""

    def __init__(self, raw: bool = False, live: bool = False) -> None:
        self.raw = raw
        self.live = live
        self._last: Any = None

    def write(self, line: LogLine) -> None:
        if self.raw and line.titan:
            return
        stream = sys.stderr if line.stream == "stderr" else sys.stdout
        if self._last is not None and self._last is not stream:
            self._last.flush()
        self._last = stream
        data = line.raw if self.raw else line.data + b"\n"
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()  # what was written as text first
            buffer.write(data)
        else:  # a stream without bytes (an embedding that captured it): the text must do
            stream.write(data.decode("utf-8", errors="replace"))
        if self.live:
            (buffer or stream).flush()

    def close(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                buffer.flush()


# ====================================================================== the command group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="titan-runtime")
def cli() -> None:
    """Titan: run scripts, commands and DAGs on a cluster of capability-tagged workers.

    \b
    Start a local cluster:   titan-runtime up
    Run a script on it:      titan-runtime submit --wait hello.py
    Run a command:           titan-runtime submit --follow -- echo hi
    See what happened:       titan-runtime status ID; titan-runtime logs ID
    """


# ---------------------------------------------------------------------- cluster processes


def _data_dir_option(fn: F) -> F:
    return click.option(
        "--data-dir",
        envvar="TITAN_DATA_DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="State, logs, artifacts and the token [env TITAN_DATA_DIR; default ~/.titan].",
    )(fn)


def _cluster_option(fn: F) -> F:
    return click.option(
        "--cluster",
        "cluster_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="A cluster.yaml: master settings and the worker pools to autoscale (docs/scaling.md).",
    )(fn)


def _master_limit_options(fn: F) -> F:
    """--limit NAME=VALUE (repeatable) and --min-free, shared by `master` and `up`."""
    from titan_runtime.core.limits import Limits
    from titan_runtime.diskspace import DEFAULT_MIN_FREE

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


def _limits(pairs: tuple[str, ...], file_settings: dict[str, Any] | None = None) -> Any:
    """The master's Limits: the cluster file's `limits:`, then each --limit NAME=VALUE over them."""
    from titan_runtime.core.limits import limits_from

    settings: dict[str, object] = dict(file_settings or {})
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--limit")
        settings[name.strip()] = value.strip()
    try:
        return limits_from(settings)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--limit") from None


def _load_cluster(path: Path) -> Any:
    from titan_runtime.clusterconfig import load_cluster_file

    return load_cluster_file(path)


def _is_default(param: str) -> bool:
    source = click.get_current_context().get_parameter_source(param)
    return source in (None, click.core.ParameterSource.DEFAULT)


def _file_settings(cluster: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The cluster file's `master:` settings among `keys`, for options not given on the command line."""
    return {k: v for k, v in cluster.master.items() if k in keys and _is_default(k)}


@cli.command()
@click.option(
    "--port", default=config.DEFAULT_PORT, show_default=True, help="Port of the master (0: any free port)."
)
@click.option(
    "--bind", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for other hosts)."
)
@_data_dir_option
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
        click.echo("Try: titan-runtime submit --wait -- echo hello    Stop with Ctrl-C.")
        sys.stdout.flush()
        stop.wait()
        click.echo("Stopping: workers first, then the master...", err=True)
    finally:
        cluster.stop()
    if cluster.failure:
        fail(f"{cluster.failure}; what was acknowledged is in {directory}: fix the cause and start it again")
    click.echo("Stopped.", err=True)


@cli.command()
@click.option(
    "--port", default=config.DEFAULT_PORT, show_default=True, help="Port to listen on (0: any free port)."
)
@click.option(
    "--bind", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for other hosts)."
)
@_data_dir_option
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


@cli.group(invoke_without_command=True)
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
@_data_dir_option
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
    from titan_runtime.worker.agent import exit_with_parent as arm_parent_death
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


# ---------------------------------------------------------------------- jobs


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


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--env")
        env[key] = value
    return env


@cli.command(cls=_SubmitCommand, context_settings={"allow_interspersed_args": False})
@click.option("--tag", "tags", multiple=True, help="Run only on workers with this tag (repeatable).")
@click.option("--priority", default=1, show_default=True, help="Higher runs first.")
@click.option(
    "--timeout", type=float, default=None, help="Kill the job (and its children) after this many seconds."
)
@click.option("--env", "env_pairs", multiple=True, help="Environment variable KEY=VALUE (repeatable).")
@click.option("--retries", type=int, default=None, help="Retries after a failed attempt.")
@click.option("--id", "job_id", default=None, help="Job id [default: the script or program name].")
@click.option("--node", default=None, help="Run on this worker (name or id).")
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
    job.env = _parse_env(env_pairs)
    job.retries = retries
    job.node = node
    run_id = client.submit_job(job)
    click.echo(run_id, err=follow)
    if not (wait or follow):
        return
    try:
        if follow:
            writer = LineWriter(live=True)
            for line in client.follow_logs(run_id):
                writer.write(line)
        record = client.wait(run_id)
    except KeyboardInterrupt:
        click.echo(f"\nStill running; cancel it with: titan-runtime cancel {run_id}", err=True)
        sys.exit(EXIT_CANCELLED)
    code = exit_code_of(record)
    if code:
        click.echo(f"titan-runtime: job {record.ref} {record.state}: {record.reason}", err=True)
    sys.exit(code)


@cli.command()
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
    for key, value in rows:
        click.echo(f"{key:<10} {value}")


@cli.command()
@click.argument("job")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the job ends.")
@click.option("--attempt", type=int, default=None, help="Attempt number [default: the latest].")
@click.option(
    "--raw",
    is_flag=True,
    help="The exact bytes the job wrote (no newline added to an unended last line, no Titan notes).",
)
@reconnect_option
@client_options
def logs(client: TitanClient, job: str, follow: bool, attempt: int | None, raw: bool) -> None:
    """Print a job's output (stdout lines to stdout, stderr lines to stderr), byte for byte."""
    writer = LineWriter(raw=raw, live=follow)
    try:
        lines = client.follow_logs(job, attempt=attempt) if follow else client.read_logs(job, attempt=attempt)
        for line in lines:
            writer.write(line)
    except KeyboardInterrupt:
        sys.exit(EXIT_CANCELLED)
    finally:
        writer.close()


@cli.command()
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


@cli.command()
@click.argument("job")
@client_options
def result(client: TitanClient, job: str) -> None:
    """Print a job's result (the JSON it passed to task.set_result)."""
    value = client.get_result(job)
    if value is None and not client.get_job(job).has_result:
        fail(f"{job} has no result (it did not call task.set_result)")
    click.echo(json.dumps(value, indent=2))


@cli.command()
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


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--limit", default=50, show_default=True, help="Most recent runs to show (0: all).")
@client_options
def runs(client: TitanClient, as_json: bool, limit: int) -> None:
    """List runs, newest first."""
    records = client.list_runs(limit)
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


# ---------------------------------------------------------------------- runs


def _parse_labels(pairs: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--label")
        labels[key] = value
    return labels


def _run_exit_code(record: RunRecord) -> int:
    """0 for a run that SUCCEEDED, or that only its (healthy) services keep running."""
    if record.state == "RUNNING":
        return 1 if record.failed_jobs else 0
    return {"SUCCEEDED": 0, "CANCELLED": EXIT_CANCELLED}.get(record.state, 1)


@cli.command("run")
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

    run = client.submit_yaml(pipeline, agent_run_id, name=name, labels=_parse_labels(labels))

    click.echo(run.id, err=follow)
    if not (wait or follow):
        return
    try:
        record = watch_run(client, run.id, follow=follow)
    except KeyboardInterrupt:
        click.echo(f"\nThe run goes on; cancel it with: titan-runtime cancel {run.id}", err=True)
        sys.exit(EXIT_CANCELLED)
    if record.state == "RUNNING":  # settled: its services keep running
        services = ", ".join(j.id for j in record.jobs if j.state == "HEALTHY")
        click.echo(
            f"run {record.id}: batch jobs done; services keep running ({services}); "
            f"stop them with `titan-runtime cancel {record.id}` or `titan-runtime service stop ID`",
            err=True,
        )
    elif record.state != "SUCCEEDED":
        click.echo(f"titan-runtime: run {record.id} {record.state}: {record.reason}", err=True)
    sys.exit(_run_exit_code(record))


@cli.command()
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


@cli.command("run-status")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@client_options
def run_status(client: TitanClient, run_id: str, as_json: bool) -> None:
    """Show a run and the state of each of its jobs."""
    record = client.get_run(run_id)
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
        return
    click.echo(
        f"run {record.id} ({record.name}): {record.state}" + (f": {record.reason}" if record.reason else "")
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


# ---------------------------------------------------------------------- dynamic DAGs


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.argument("job_id", metavar="JOB")
@click.option("--comment", default="", help="Why (recorded with the decision).")
@client_options
def approve(client: TitanClient, run_id: str, job_id: str, comment: str) -> None:
    """Approve the gate after RUN/JOB: its dependents run."""
    record = client.approve(run_id, job_id, comment)
    click.echo(f"approved {record.ref}")


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.argument("job_id", metavar="JOB")
@click.option("--comment", default="", help="Why (recorded with the decision).")
@client_options
def reject(client: TitanClient, run_id: str, job_id: str, comment: str) -> None:
    """Reject the gate after RUN/JOB: the job fails and its dependents never run."""
    record = client.reject(run_id, job_id, comment)
    click.echo(f"rejected {record.ref}")


@cli.command()
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


@cli.command("agent-runs")
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


@cli.group()
def schedule() -> None:
    """Run saved pipelines on cron schedules (UTC)."""


@schedule.command("add")
@click.argument("name")
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cron", required=True, help='Five cron fields, e.g. "*/5 * * * *" (UTC).')
@click.option(
    "--catch-up", is_flag=True, help="After downtime, run once for the last missed time (default: skip)."
)
@client_options
def schedule_add(client: TitanClient, name: str, pipeline: Path, cron: str, catch_up: bool) -> None:
    """Save PIPELINE under NAME and run it on CRON."""
    client.save_yaml(name, pipeline)
    record = client.add_schedule(name, name, cron, catch_up)
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


# ---------------------------------------------------------------------- services


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--all", "include_ended", is_flag=True, help="Also stopped and failed instances.")
@client_options
def services(client: TitanClient, as_json: bool, include_ended: bool) -> None:
    """List service instances: where they run, their endpoint, state and restarts."""
    records = client.list_services(include_ended=include_ended)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in records], indent=2))
        return
    if not records:
        click.echo("No services running.")
        return
    print_table(
        ["ID", "SERVICE", "RUN", "WORKER", "ENDPOINT", "STATE", "RESTARTS", "STARTED", "REASON"],
        [
            [
                s.id,
                s.service,
                s.run_id,
                s.worker_name or "-",
                s.endpoint or "-",
                s.state,
                str(s.restarts),
                fmt_time(s.started_at),
                s.reason,
            ]
            for s in records
        ],
    )


@cli.group()
def service() -> None:
    """Stop or restart a service (every instance of it)."""


@service.command("stop")
@click.argument("service_id", metavar="ID")
@client_options
def service_stop(client: TitanClient, service_id: str) -> None:
    """Stop a service for good: its whole process trees; it is not restarted."""
    for ref in client.stop_service(service_id) or [f"{service_id}: nothing running"]:
        click.echo(f"stopped {ref}" if "/" in ref else ref)


@service.command("restart")
@click.argument("service_id", metavar="ID")
@client_options
def service_restart(client: TitanClient, service_id: str) -> None:
    """Restart every instance of a service now (not counted as a crash)."""
    for ref in client.restart_service(service_id) or [f"{service_id}: nothing running"]:
        click.echo(f"restarting {ref}" if "/" in ref else ref)


@service.command("endpoint")
@click.argument("service_id", metavar="ID")
@click.option("--all", "all_instances", is_flag=True, help="Every healthy replica, one per line.")
@client_options
def service_endpoint(client: TitanClient, service_id: str, all_instances: bool) -> None:
    """Print HOST:PORT of the service's healthy instance."""
    found = client.service_endpoint(service_id, all=all_instances)
    for endpoint in found if isinstance(found, list) else [found]:
        click.echo(endpoint)


# ---------------------------------------------------------------------- KV


@cli.group()
def kv() -> None:
    """The cluster's durable key-value store (values and sets of UTF-8 text)."""


@kv.command("put")
@click.argument("key")
@click.argument("value")
@client_options
def kv_put(client: TitanClient, key: str, value: str) -> None:
    """Set KEY to VALUE."""
    client.store_put(key, value)


@kv.command("get")
@click.argument("key")
@client_options
def kv_get(client: TitanClient, key: str) -> None:
    """Print KEY's value; exit 1 when it has none."""
    value = client.store_get(key)
    if value is None:
        fail(f"no value for key {key!r}")
    click.echo(value)


@kv.command("delete")
@click.argument("key")
@client_options
def kv_delete(client: TitanClient, key: str) -> None:
    """Delete KEY (its value and its set); prints 1 if it existed, else 0."""
    click.echo("1" if client.store_delete(key) else "0")


@kv.command("incr")
@click.argument("key")
@click.argument("amount", type=int, default=1)
@client_options
def kv_incr(client: TitanClient, key: str, amount: int) -> None:
    """Atomically add AMOUNT (default 1) to KEY's integer value; print the new value."""
    click.echo(str(client.store_incr(key, amount)))


@kv.command("sadd")
@click.argument("key")
@click.argument("member")
@client_options
def kv_sadd(client: TitanClient, key: str, member: str) -> None:
    """Add MEMBER to the set KEY; prints 1 if it was new, else 0."""
    click.echo("1" if client.store_sadd(key, member) else "0")


@kv.command("srem")
@click.argument("key")
@click.argument("member")
@client_options
def kv_srem(client: TitanClient, key: str, member: str) -> None:
    """Remove MEMBER from the set KEY; prints 1 if it was there, else 0."""
    click.echo("1" if client.store_srem(key, member) else "0")


@kv.command("smembers")
@click.argument("key")
@client_options
def kv_smembers(client: TitanClient, key: str) -> None:
    """Print the members of the set KEY, one per line, sorted."""
    for member in sorted(client.store_smembers(key)):
        click.echo(member)


# ---------------------------------------------------------------------- integrations (optional extras)


class LazyGroup(click.Group):
    """A command group from an optional extra: imported only when used, with an install hint when missing."""

    def __init__(self, name: str, import_path: str, extra: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.import_path = import_path
        self.extra = extra
        self._group: click.Group | None = None

    def _load(self) -> click.Group:
        if self._group is None:
            module_name, _, attr = self.import_path.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                missing = (exc.name or str(exc)).split(".")[0]
                raise click.ClickException(
                    f"`titan-runtime {self.name}` needs the {self.extra} extra ({missing} is not "
                    f"installed): pip install 'titan-runtime[{self.extra}]'"
                ) from None
            self._group = getattr(module, attr)
        return self._group

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._load().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load().get_command(ctx, cmd_name)


cli.add_command(
    LazyGroup(
        "airflow",
        import_path="titan_airflow.cli:airflow",
        extra="airflow",
        help="Start Airflow DAG runs and wait for them, through Airflow's REST API (needs the airflow extra).",
    )
)


# ---------------------------------------------------------------------- autoscaling and SSH workers

from titan_runtime.cli_scaling import autoscaler, ssh  # noqa: E402 - it uses the helpers above

cli.add_command(autoscaler)
cli.add_command(certs)

from titan_runtime.cli_audit import audit  # noqa: E402 - it uses the helpers above
from titan_runtime.cli_secrets import secret  # noqa: E402 - it uses the helpers above
from titan_runtime.cli_tokens import token as token_group  # noqa: E402 - it uses the helpers above

cli.add_command(audit)
cli.add_command(secret)
cli.add_command(token_group)
cli.add_command(ssh)


# ---------------------------------------------------------------------- demo


@cli.command(hidden=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@friendly_errors
def demo(data_dir: Path | None) -> None:
    """Start a throwaway cluster, run the example pipeline, show what happened, stop (make demo)."""
    from titan_runtime.demo import run_demo

    sys.exit(run_demo(data_dir))


def main() -> None:
    """Entry point: usage errors are one line too (what was wrong, where to read more)."""
    try:
        code = cli.main(prog_name="titan-runtime", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(2)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "titan-runtime"
        click.echo(f"titan-runtime: error: {exc.format_message()} (see `{command} --help`)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"titan-runtime: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(EXIT_CANCELLED)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
