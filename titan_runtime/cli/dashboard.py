"""`titan-runtime dashboard`: the web UI (titan_runtime/dashboard, the dashboard extra)."""

from __future__ import annotations

from pathlib import Path

import click

from titan_runtime.cli.options import friendly_errors, setup_logging, tls_options
from titan_runtime.dashboard.settings import DEFAULT_BIND, DEFAULT_PORT


@click.command("dashboard")
@click.option("--bind", default=DEFAULT_BIND, show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--https-cert", type=click.Path(exists=True, dir_okay=False), help="Serve https: this certificate."
)
@click.option("--https-key", type=click.Path(exists=True, dir_okay=False), help="Its key, for --https-cert.")
@click.option(
    "--insecure",
    is_flag=True,
    help="Listen on a non-loopback address without https (behind a proxy that serves https).",
)
@click.option(
    "--root-path",
    default="",
    help="The path prefix a reverse proxy serves it under and strips, e.g. /titan (its links carry it).",
)
@click.option(
    "--secret-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Sign session cookies with this file's bytes (default: a random key per process).",
)
@click.option(
    "--address", envvar="TITAN_ADDRESS", help="Master HOST:PORT [env TITAN_ADDRESS; default 127.0.0.1:9090]."
)
@click.option(
    "--token",
    envvar="TITAN_TOKEN",
    help="The dashboard's own token, for its shared live streams (a read token is enough) "
    "[env TITAN_TOKEN; default: DATA_DIR/token].",
)
@click.option(
    "--data-dir",
    envvar="TITAN_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the token file is [env TITAN_DATA_DIR; default ~/.titan].",
)
@tls_options
@click.option("-v", "--verbose", is_flag=True, help="Log every request and debug messages.")
@friendly_errors
def dashboard(
    bind: str,
    port: int,
    https_cert: str | None,
    https_key: str | None,
    insecure: bool,
    root_path: str,
    secret_key_file: Path | None,
    address: str | None,
    token: str | None,
    data_dir: Path | None,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    verbose: bool,
) -> None:
    """Serve the web dashboard: workers, runs and their DAGs, live logs, services, approvals.

    \b
    People sign in with a Titan token (the cluster token, or a named token: a read
    token gives a read-only session); what they see and do goes through their token.
    The dashboard's own token (--token) holds the one watch stream it shares with
    every browser.
      titan-runtime dashboard                      # http://127.0.0.1:9091/
      titan-runtime dashboard --bind 0.0.0.0 --https-cert cert.pem --https-key key.pem
    """
    from titan_runtime.client.errors import TitanConnectionError
    from titan_runtime.client.sync import TitanClient

    try:
        from titan_runtime.dashboard.server import DashboardError, serve
        from titan_runtime.dashboard.settings import DashboardSettings
    except ImportError as exc:
        raise click.ClickException(
            f"`titan-runtime dashboard` needs the dashboard extra ({(exc.name or str(exc)).split('.')[0]} "
            "is not installed): pip install 'titan-runtime[dashboard]'"
        ) from None
    if bool(https_cert) != bool(https_key):
        raise click.BadParameter("give both --https-cert and --https-key", param_hint="--https-cert")
    if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
        raise click.BadParameter(
            "a path like /titan (a leading /, no trailing one)", param_hint="--root-path"
        )
    setup_logging(verbose)
    settings = DashboardSettings(
        address=address,
        token=token,
        data_dir=str(data_dir) if data_dir else None,
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
        secret_key=secret_key_file.read_bytes() if secret_key_file else None,
        root_path=root_path,
    )
    with TitanClient(
        address=address,
        token=token,
        data_dir=settings.data_dir,
        reconnect_timeout=0,
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
    ) as client:
        master = client.address
        try:
            identity = client.whoami()  # a wrong or revoked token is the command's error
        except TitanConnectionError as exc:
            click.echo(f"titan-runtime: warning: {exc}; the dashboard keeps trying", err=True)
        else:
            if identity.kind not in ("cluster", "admin", "submit", "read"):
                raise click.ClickException(
                    f"the dashboard's own token must be a person's, not a {identity.kind} credential"
                )

    def started(url: str) -> None:
        behind = f"; a proxy serves it at {root_path}/" if root_path else ""
        click.echo(f"Titan dashboard on {url} (master {master}{behind}): sign in with a token", err=True)

    try:
        serve(
            settings,
            bind=bind,
            port=port,
            https_cert=https_cert,
            https_key=https_key,
            insecure=insecure,
            log_level="info" if verbose else "warning",
            started=started,
        )
    except DashboardError as exc:
        raise click.ClickException(str(exc)) from None
