"""`titan-runtime autoscaler ...` and `titan-runtime ssh ...`: the pools' status and decisions, and
workers bootstrapped over SSH (docs/scaling.md). Registered on the main group by `cli/__init__.py`."""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from titan_runtime import config
from titan_runtime.cli.options import (
    EXIT_CANCELLED,
    F,
    client_options,
    data_dir_option,
    fail,
    friendly_errors,
    parse_offer,
    parse_tags,
    tls_options,
)
from titan_runtime.cli.output import fmt_time, print_table
from titan_runtime.client.autoscaler import PoolRecord
from titan_runtime.client.sync import TitanClient


@click.group()
def autoscaler() -> None:
    """The autoscaled pools of a master started with --cluster, and its decisions."""


@autoscaler.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@client_options
def autoscaler_status(client: TitanClient, as_json: bool) -> None:
    """Each pool: workers running, starting and draining, jobs waiting for it, why it cannot grow."""
    record = client.autoscaler_status()
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
        return
    if not record.enabled:
        click.echo("No autoscaling: start the master with --cluster cluster.yaml (see docs/scaling.md).")
        return
    now = time.time()
    rows = []
    for p in record.pools:
        note = p.note
        if p.backoff_until > now and not note:
            note = f"backing off for {p.backoff_until - now:.0f}s"
        rows.append(
            [
                p.name,
                p.provider,
                ",".join(p.tags) or "-",
                _offers(p),
                f"{p.min}-{p.max}",
                str(p.workers),
                str(p.launching),
                str(p.draining),
                str(p.waiting_jobs),
                str(p.failures),
                note or "-",
            ]
        )
    print_table(
        [
            "POOL",
            "PROVIDER",
            "TAGS",
            "OFFERS",
            "MIN-MAX",
            "WORKERS",
            "STARTING",
            "DRAINING",
            "WAITING",
            "FAILED",
            "NOTE",
        ],
        rows,
    )
    for reason in record.unserved_reasons:
        click.echo(f"no pool serves: {reason}", err=True)


def _offers(pool: PoolRecord) -> str:
    """What each worker of the pool will offer: "8 CPUs, 16 GiB, GPUs 0,1"; ? where undeclared."""
    gpus = ("GPUs " + ",".join(pool.gpus) if pool.gpus else "no GPUs") if pool.declares_gpus else "GPUs ?"
    return f"{pool.cpus or '?'} CPUs, {pool.memory or '? memory'}, {gpus}"


@autoscaler.command("events")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option("--limit", default=50, show_default=True, help="Latest events to show (0: all kept).")
@click.option("--pool", default="", help="Only this pool's events.")
@client_options
def autoscaler_events(client: TitanClient, as_json: bool, limit: int, pool: str) -> None:
    """The autoscaler's decisions, oldest first, each with its reason."""
    records = client.autoscaler_events(limit, pool)
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in records], indent=2))
        return
    if not records:
        click.echo("No autoscaler events yet.")
        return
    print_table(
        ["TIME", "POOL", "EVENT", "LAUNCH", "MESSAGE"],
        [[fmt_time(e.at), e.pool or "-", e.kind, e.launch_id or "-", e.message] for e in records],
    )


@click.group()
def ssh() -> None:
    """Turn machines you can SSH into into workers (no inbound port needed on them)."""


def _ssh_options(fn: F) -> F:
    """--key, --remote-dir and --data-dir, shared by the ssh commands."""
    fn = click.option(
        "--key",
        type=click.Path(dir_okay=False),
        default=None,
        help="Private key file [default: your SSH keys and agent].",
    )(fn)
    fn = click.option(
        "--remote-dir",
        default="~/.titan-worker",
        show_default=True,
        help="Where the worker lives on the host: virtualenv, token, log, work.",
    )(fn)
    fn = data_dir_option(fn)
    return fn


def _ssh_connect(target_text: str, key: str | None, data_dir: Path | None, accept: bool = False) -> Any:
    from titan_runtime.providers.ssh import SshTarget, connect

    target = SshTarget.parse(target_text)
    return target, connect(target, config.data_dir(data_dir), key, accept)


def _ssh_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from titan_runtime.providers.base import ProviderError

        try:
            return fn(*args, **kwargs)
        except ProviderError as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


@ssh.command("bootstrap")
@click.argument("target", metavar="USER@HOST[:PORT]")
@click.option("--tags", default="", help="The worker's tags, comma-separated (e.g. GPU).")
@click.option("--slots", type=int, default=None, help="Jobs it runs at once [default: the host's CPU count].")
@click.option("--cpus", type=int, default=None, help="CPUs it offers to jobs [default: what the host has].")
@click.option(
    "--memory", default=None, help="Memory it offers to jobs, e.g. 16G [default: what the host has]."
)
@click.option(
    "--gpus",
    default=None,
    help="GPU device ids it offers, e.g. 0,1, or none [default: what nvidia-smi finds on the host].",
)
@click.option(
    "--python", default="python3", show_default=True, help="The host's Python (3.10+) for the virtualenv."
)
@click.option(
    "--accept-new-host-key",
    is_flag=True,
    help="Trust the host's key on first use (saved in DATA_DIR/known_hosts).",
)
@click.option(
    "--wheelhouse",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Wheels of the dependencies, for hosts without package index access (see `ssh wheelhouse`).",
)
@click.option(
    "--tunnel",
    is_flag=True,
    help="The worker reaches the master through an SSH reverse forward; stays in the foreground.",
)
@click.option("--name", default=None, help="Worker name [default: the host].")
@click.option(
    "--master-address",
    default=None,
    help="HOST:PORT the host reaches the master at [default: --address].",
)
@click.option(
    "--register-timeout", default=120.0, show_default=True, help="Seconds to wait for the worker to register."
)
@click.option(
    "--address", envvar="TITAN_ADDRESS", help="Master HOST:PORT [env TITAN_ADDRESS; default 127.0.0.1:9090]."
)
@click.option(
    "--token", envvar="TITAN_TOKEN", help="Cluster token [env TITAN_TOKEN; default: DATA_DIR/token]."
)
@tls_options
@_ssh_options
@friendly_errors
@_ssh_errors
def ssh_bootstrap(
    target: str,
    tags: str,
    slots: int | None,
    cpus: int | None,
    memory: str | None,
    gpus: str | None,
    python: str,
    accept_new_host_key: bool,
    wheelhouse: Path | None,
    tunnel: bool,
    name: str | None,
    master_address: str | None,
    register_timeout: float,
    address: str | None,
    token: str | None,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    key: str | None,
    remote_dir: str,
    data_dir: Path | None,
) -> None:
    """Install titan-runtime on USER@HOST and start a worker there that dials the master.

    \b
    Strict host-key checking (--accept-new-host-key trusts a new host on first use); checks the
    host's Python; creates a virtualenv in --remote-dir; installs this very titan-runtime from a
    wheel uploaded by SFTP (with --wheelhouse, the dependencies too, without a package index);
    writes the token into a mode-0600 file (with --tls-ca, the CA and any client certificate go along
    into REMOTE_DIR/tls); starts the worker detached, its log on the host; waits for it to
    register. Failures print the host's error verbatim and what to do.
    """
    import secrets as _secrets

    from titan_runtime.providers.ssh import (
        BootstrapOptions,
        SshTarget,
        bootstrap,
        remote_log_tail,
        remote_status,
        remote_stop,
    )

    ssh_target = SshTarget.parse(target)
    if slots is not None and slots < 1:
        raise click.BadParameter("must be at least 1", param_hint="--slots")
    cpus, memory_mb, gpu_ids = parse_offer(cpus, memory, gpus)
    if master_address:
        config.split_host_port(master_address)
    master = config.address(address, data_dir)
    resolved_token = config.token(token, data_dir)
    if not resolved_token:
        fail(
            f"no token: pass --token or set TITAN_TOKEN (the master keeps it in {config.data_dir(data_dir)}/token)"
        )
    directory = config.data_dir(data_dir)
    with TitanClient(
        address=master, token=resolved_token, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key
    ) as client:
        client.list_workers()  # the master answers and takes the token, before we touch the host
        launch_id = f"ssh-{_secrets.token_hex(4)}"
        started = time.monotonic()
        done = bootstrap(
            BootstrapOptions(
                target=ssh_target,
                master=master,
                token=resolved_token or "",
                data_dir=directory,
                name=name or "",
                tags=tuple(parse_tags(tags)),
                slots=slots,
                cpus=cpus,
                memory_mb=memory_mb,
                gpus=gpu_ids,
                key=key,
                python=python,
                accept_new_host_key=accept_new_host_key,
                wheelhouse=wheelhouse,
                tunnel=tunnel,
                master_address=master_address or "",
                remote_dir=remote_dir,
                launch_id=launch_id,
                tls=client.tls,
            )
        )
        # From here Ctrl-C (or SIGTERM) stops the remote worker cleanly rather than leaving it behind.
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            mark = time.monotonic()
            status_client = done.client
            own = status_client is None
            deadline = mark + register_timeout
            worker = None
            next_check = mark + 1.0
            try:
                if own:
                    _, status_client = _ssh_connect(target, key, data_dir)
                while worker is None:
                    worker = next(
                        (w for w in client.list_workers() if w.launch_id == launch_id and w.state == "ALIVE"),
                        None,
                    )
                    if worker is not None:
                        break
                    now = time.monotonic()
                    if now >= next_check:
                        next_check = now + 1.0
                        if not remote_status(status_client, done.remote_dir)["running"]:
                            tail = remote_log_tail(status_client, done.remote_dir, 30).rstrip()
                            fail(
                                f"the worker on {ssh_target.host} exited before registering; its log "
                                f"{done.log_path} ends with:\n{tail}"
                            )
                    if stop.is_set():
                        outcome = remote_stop(status_client, done.remote_dir, now=True, timeout=15)
                        click.echo(f"interrupted before it registered: {outcome} on {ssh_target}", err=True)
                        sys.exit(EXIT_CANCELLED)
                    if now >= deadline:
                        tail = remote_log_tail(status_client, done.remote_dir, 15).rstrip()
                        remote_stop(status_client, done.remote_dir, now=True, timeout=15)
                        fail(
                            f"the worker on {ssh_target.host} did not register within {register_timeout:g}s, so it "
                            f"was stopped. It dialled the master at {done.master}: if the host cannot reach that "
                            "address, pass --master-address HOST:PORT (the master must listen there: "
                            "master --bind) or use --tunnel. Its log ends with:\n" + tail
                        )
                    time.sleep(0.1)
            finally:
                if own and status_client is not None:
                    status_client.close()
            timings = dict(done.timings)
            timings["registration"] = time.monotonic() - mark + timings.pop("start", 0.0)
            total = time.monotonic() - started
            split = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
            click.echo(
                f"worker {worker.name} on {ssh_target} registered in {total:.1f}s ({split}); "
                f"tags {','.join(worker.tags) or '-'}, {worker.slots} slot(s); its log: {done.log_path} on the host"
            )
            if tunnel:
                click.echo(
                    f"The worker reaches the master through this SSH connection (port {done.master} on the host). "
                    "Keeping it open; Ctrl-C stops the worker and closes it.",
                    err=True,
                )
                sys.stdout.flush()
                transport = done.client.get_transport() if done.client else None
                while not stop.wait(0.5):
                    if transport is None or not transport.is_active():
                        fail(f"the SSH connection to {ssh_target} closed; the worker has lost the master")
                click.echo(
                    f"stopping the worker on {ssh_target}: {remote_stop(done.client, done.remote_dir)}",
                    err=True,
                )
        finally:
            done.close()


@ssh.command("status")
@click.argument("target", metavar="USER@HOST[:PORT]")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@_ssh_options
@friendly_errors
@_ssh_errors
def ssh_status(target: str, as_json: bool, key: str | None, remote_dir: str, data_dir: Path | None) -> None:
    """Is the bootstrapped worker on USER@HOST running? Exit 0 if so, 3 if not."""
    from titan_runtime.providers.ssh import remote_status

    ssh_target, client = _ssh_connect(target, key, data_dir)
    try:
        status = remote_status(client, remote_dir)
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps(status, indent=2))
    elif not status["installed"]:
        click.echo(f"{ssh_target}: nothing bootstrapped in {remote_dir}")
    else:
        meta = status["meta"]
        state = f"running (pid {status['pid']})" if status["running"] else "not running"
        click.echo(f"{ssh_target}: worker {meta.get('name', '?')} {state}")
        click.echo(
            f"  version {meta.get('version', '?')}, master {meta.get('master', '?')}, tags {','.join(meta.get('tags', [])) or '-'}"
        )
        click.echo(f"  log {status['dir']}/worker.log ({status['log_bytes']} bytes)")
    sys.exit(0 if status["running"] else 3)


@ssh.command("logs")
@click.argument("target", metavar="USER@HOST[:PORT]")
@click.option("-n", "--lines", default=50, show_default=True, help="Lines from the end.")
@_ssh_options
@friendly_errors
@_ssh_errors
def ssh_logs(target: str, lines: int, key: str | None, remote_dir: str, data_dir: Path | None) -> None:
    """Print the end of the bootstrapped worker's log on USER@HOST."""
    from titan_runtime.providers.ssh import remote_log_tail

    _, client = _ssh_connect(target, key, data_dir)
    try:
        click.echo(remote_log_tail(client, remote_dir, lines), nl=False)
    finally:
        client.close()


@ssh.command("stop")
@click.argument("target", metavar="USER@HOST[:PORT]")
@click.option(
    "--now", is_flag=True, help="Hand running jobs back at once (SIGINT) instead of draining (SIGTERM)."
)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait before SIGKILL.")
@_ssh_options
@friendly_errors
@_ssh_errors
def ssh_stop(
    target: str, now: bool, timeout: float, key: str | None, remote_dir: str, data_dir: Path | None
) -> None:
    """Stop the bootstrapped worker on USER@HOST by its pid (it drains first unless --now)."""
    from titan_runtime.providers.ssh import remote_stop

    ssh_target, client = _ssh_connect(target, key, data_dir)
    try:
        outcome = remote_stop(client, remote_dir, now=now, timeout=timeout)
    finally:
        client.close()
    if outcome == "none":
        click.echo(f"{ssh_target}: no worker running")
    elif outcome.startswith("killed"):
        click.echo(f"{ssh_target}: the worker did not stop within {timeout:g}s; {outcome} (SIGKILL)")
    else:
        click.echo(f"{ssh_target}: {outcome}")


@ssh.command("wheelhouse")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@data_dir_option
@friendly_errors
@_ssh_errors
def ssh_wheelhouse(directory: Path, data_dir: Path | None) -> None:
    """Download the wheels titan-runtime needs (the versions installed here) into DIRECTORY, for
    `ssh bootstrap --wheelhouse` on hosts without package index access (same Python and platform)."""
    from titan_runtime.providers.wheel import build_wheelhouse

    wheels = build_wheelhouse(directory, config.data_dir(data_dir) / "wheels")
    click.echo(f"{len(wheels)} wheel(s) in {directory}")
