"""`titan-runtime secret set|list|rm`: the cluster's secrets (docs/security.md, "Secrets").
Registered on the main group by `cli/__init__.py`.

A value is read from stdin, a file, or a hidden prompt at a terminal, never from the command line:
other users read a process's arguments in `ps`, and shells keep them in their history.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from titan_runtime.cli.options import client_options
from titan_runtime.cli.output import print_table
from titan_runtime.client.sync import TitanClient


def strip_one_newline(data: bytes) -> bytes:
    """`echo VALUE |` and editors end the value with a newline nobody means: exactly one goes
    (`\\n` or `\\r\\n`); anything before it, other newlines included, is kept."""
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data


def read_value(file: Path | None, raw: bool) -> bytes:
    if file is not None:
        data = file.read_bytes()
        where = str(file)
    elif sys.stdin is None or sys.stdin.isatty():
        text = click.prompt(
            "Value", hide_input=True, confirmation_prompt=True, default="", show_default=False
        )
        return text.encode()
    else:
        data = sys.stdin.buffer.read()
        where = "stdin"
    value = data if raw else strip_one_newline(data)
    if not value:
        raise click.ClickException(
            f'no value in {where}: pipe it in (`printf %s "$VALUE" | titan-runtime secret set NAME`) '
            "or give --file PATH"
        )
    return value


@click.group("secret")
def secret() -> None:
    """The cluster's secrets: values a job gets in its environment when it names them
    (`secrets: [NAME]` or `secrets: {ENV_VAR: NAME}` in YAML, `TitanJob(secrets=...)`).

    Encrypted on the master (AES-GCM, DATA_DIR/secrets.key), never shown again, masked as ***
    in the logs of the jobs that use them. Setting, listing and deleting take the cluster token."""


@secret.command("set")
@click.argument("name")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Read the value from this file instead of stdin.",
)
@click.option("--raw", is_flag=True, help="Keep the value's trailing newline (one is dropped by default).")
@client_options
def set_(client: TitanClient, name: str, file: Path | None, raw: bool) -> None:
    """Set secret NAME (or replace it: jobs assigned from now on get the new value).

    The value comes from stdin (`printf %s "$PW" | titan-runtime secret set db-password`), from
    --file, or from a hidden prompt at a terminal; never from the command line. One trailing
    newline is dropped (what `echo` and editors add) unless --raw. At most 64 KiB of UTF-8 text."""
    client.set_secret(name, read_value(file, raw))
    click.echo(f"secret {name} set")


@secret.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {name, updated_at}.")
@client_options
def list_(client: TitanClient, as_json: bool) -> None:
    """The secrets' names and when each was last set; never a value."""
    records = client.list_secrets()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    if not records:
        click.echo("No secrets. Set one with `titan-runtime secret set NAME`.")
        return
    print_table(
        ["NAME", "UPDATED"],
        [[r.name, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.updated_at))] for r in records],
    )


@secret.command("rm")
@click.argument("name")
@client_options
def rm(client: TitanClient, name: str) -> None:
    """Delete secret NAME. Jobs that name it and are not running yet fail when they are assigned
    (`secret NAME was deleted after submission`); running ones keep the value they got."""
    client.delete_secret(name)
    click.echo(f"secret {name} deleted")
