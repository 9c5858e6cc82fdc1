"""TLS on the command line: the master's options (`master`, `up`) and `titan-runtime certs`.

The process commands (cli/processes.py) take its master options; it needs nothing of theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from titan_runtime import config
from titan_runtime.tls import CA, LOCAL_WORKER, ServerTls

F = TypeVar("F", bound=Callable[..., Any])


def master_tls_options(fn: F) -> F:
    """--tls-dir, --tls-cert/--tls-key/--tls-ca, --require-client-cert and --insecure."""
    options = [
        click.option(
            "--insecure", is_flag=True, help="Allow plaintext on a non-loopback --bind (a trusted network)."
        ),
        click.option(
            "--require-client-cert",
            is_flag=True,
            help="Admit only clients and workers with a certificate the CA signed (`certs issue`).",
        ),
        click.option("--tls-ca", "server_tls_ca", default=None, help="The CA certificate (with --tls-cert)."),
        click.option("--tls-key", "server_tls_key", default=None, help="The master's key (with --tls-cert)."),
        click.option("--tls-cert", "server_tls_cert", default=None, help="The master's certificate."),
        click.option(
            "--tls-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Serve TLS with the files `certs init` made there (ca.pem, master.pem, master-key.pem).",
        ),
    ]
    for option in options:
        fn = option(fn)
    return fn


def server_tls(
    tls_dir: Path | None,
    cert: str | None,
    key: str | None,
    ca: str | None,
    require_client_cert: bool,
) -> ServerTls | None:
    """What the master serves with, from its options; a clear error for an incomplete set."""
    if tls_dir is not None:
        if cert or key or ca:
            raise click.UsageError("give --tls-dir or --tls-cert/--tls-key/--tls-ca, not both")
        if not (tls_dir / CA).exists():
            raise click.BadParameter(
                f"{tls_dir} has no {CA}: make it with `titan-runtime certs init --dir {tls_dir}`",
                param_hint="--tls-dir",
            )
        return ServerTls.from_dir(tls_dir.expanduser().resolve(), require_client_cert)
    if cert or key or ca:
        if not (cert and key and ca):
            raise click.UsageError("--tls-cert, --tls-key and --tls-ca go together (or give --tls-dir)")
        return ServerTls(cert, key, ca, require_client_cert)  # type: ignore[arg-type]
    if require_client_cert:
        raise click.UsageError("--require-client-cert needs TLS: give --tls-dir")
    return None


@click.group()
def certs() -> None:
    """A certificate authority for TLS between the cluster's hosts (docs/security.md)."""


def _dir_option(fn: F) -> F:
    return click.option(
        "--dir",
        "directory",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where the CA and certificates are [default: DATA_DIR/tls].",
    )(fn)


@certs.command("init")
@_dir_option
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="A name or address clients dial the master at (repeatable); localhost, 127.0.0.1, ::1 and "
    "this host's name are always in.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=825,
    show_default=True,
    help="The master certificate's life.",
)
def certs_init(directory: Path | None, hosts: tuple[str, ...], days: int) -> None:
    """Make a CA and the master's certificate; then start the master with --tls-dir DIR."""
    from titan_runtime.certs import CertError, init

    directory = directory or config.data_dir() / "tls"
    try:
        written = init(directory, hosts, days)
    except CertError as exc:
        raise click.ClickException(str(exc)) from None  # said as `titan-runtime: error: ...`, exit 1
    for path in written:
        click.echo(path)
    click.echo(
        f"Start the master with --tls-dir {directory}; give clients and workers --tls-ca {directory / CA} "
        "(keep ca-key.pem on this host: it signs certificates).",
        err=True,
    )


@certs.command("issue")
@click.argument("kind", type=click.Choice(["worker", "client"]))
@click.argument("name")
@_dir_option
@click.option(
    "--days", type=click.IntRange(min=1), default=365, show_default=True, help="The certificate's life."
)
def certs_issue(kind: str, name: str, directory: Path | None, days: int) -> None:
    """A client certificate (for a master started with --require-client-cert): prints its two files."""
    from titan_runtime.certs import CertError, issue

    if name == LOCAL_WORKER and kind == "worker":
        click.echo(f"note: `up` and local pools use worker {LOCAL_WORKER!r} for their own workers", err=True)
    try:
        cert, key = issue(directory or config.data_dir() / "tls", kind, name, days)
    except CertError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(cert)
    click.echo(key)
