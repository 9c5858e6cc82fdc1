"""`titan-runtime token create|list|revoke`: named tokens with a role (docs/security.md).
Registered on the main group by `cli/__init__.py`."""

from __future__ import annotations

import json

import click

from titan_runtime.cli.options import client_options
from titan_runtime.cli.output import fmt_time, print_table
from titan_runtime.client.specs import parse_duration
from titan_runtime.client.sync import TitanClient
from titan_runtime.master import policy

ROLES = tuple(kind.value for kind in policy.ROLES)


@click.group("token")
def token() -> None:
    """Named tokens, each with one role, to hand out instead of the cluster token.

    \b
    admin   everything the cluster token may do
    submit  read, and submit runs; cancel, extend and approve the runs it submitted; KV, artifacts
    read    every call that changes nothing (a dashboard, a monitor)
    worker  connect a worker named after the token, with the tags the token grants
    """


@token.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the token may do.")
@click.option("--name", default="", help="Its name, in listings and the audit log [default: ROLE-xxxxxx].")
@click.option("--expires", default=None, help="Good for this long (90m, 12h, 30d) [default: until revoked].")
@click.option("--pool", default="", help="Worker tokens: the pool its workers belong to.")
@click.option(
    "--tags", default="", help="Worker tokens: the only tags its workers may claim (comma-separated)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the token and its record as JSON.")
@client_options
def create(
    client: TitanClient, role: str, name: str, expires: str | None, pool: str, tags: str, as_json: bool
) -> None:
    """Make a token and print it, once: the master keeps only its hash. Needs an admin token.

    The token alone goes to stdout (`TOKEN=$(titan-runtime token create --role read)`); a worker
    token admits workers started with `--name NAME` (their ids are NAME-xxxxxx)."""
    expires_in = 0.0
    if expires:
        try:
            expires_in = parse_duration(expires)
        except ValueError:
            raise click.BadParameter(
                f"{expires!r}: give a duration such as 90m, 12h or 30d", param_hint="--expires"
            ) from None
        if expires_in <= 0:
            raise click.BadParameter("give a positive duration", param_hint="--expires")
    tag_list = [t.strip() for t in tags.split(",") if t.strip()]
    secret, record = client.create_token(role, name, expires_in, pool, tag_list)
    if as_json:
        click.echo(json.dumps({"token": secret, **record.to_dict()}, indent=2))
        return
    click.echo(secret)
    until = f"until {fmt_time(record.expires_at)}" if record.expires_at else "until revoked"
    click.echo(f"{record.role} token {record.name}, good {until}; it is shown only this once", err=True)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@client_options
def list_(client: TitanClient, as_json: bool) -> None:
    """The named tokens: name, role, when made, when they expire (never the tokens)."""
    records = client.list_tokens()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    if not records:
        click.echo("No named tokens; make one with `titan-runtime token create --role ROLE`.")
        return
    print_table(
        ["NAME", "ROLE", "CREATED", "EXPIRES", "POOL", "TAGS"],
        [
            [
                r.name,
                r.role,
                fmt_time(r.created_at),
                fmt_time(r.expires_at) if r.expires_at else "never",
                r.pool or "-",
                ",".join(r.tags) or "-",
            ]
            for r in records
        ],
    )


@token.command("revoke")
@click.argument("name")
@client_options
def revoke(client: TitanClient, name: str) -> None:
    """Revoke a token by name: it admits nothing from now on, and the workers it admitted are
    disconnected. Needs an admin token."""
    record = client.revoke_token(name)
    click.echo(f"revoked {record.role} token {record.name}")
