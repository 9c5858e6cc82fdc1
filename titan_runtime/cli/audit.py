"""`titan-runtime audit`: who changed what, from where, and how it ended (docs/security.md).
Registered on the main group by `cli/__init__.py`."""

from __future__ import annotations

import json

import click

from titan_runtime.cli.options import client_options, since_option
from titan_runtime.cli.output import fmt_time, print_table
from titan_runtime.client.sync import TitanClient


@click.command("audit")
@since_option("entries")
@click.option("--limit", default=100, show_default=True, help="The latest N entries (at most 100,000).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@client_options
def audit(client: TitanClient, since: float, limit: int, as_json: bool) -> None:
    """Every call that changed something: when, by whom (the credential's kind, never the token),
    from where, on what, and how it ended. Needs the cluster token."""
    records = client.audit(since, limit)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    if not records:
        click.echo("No audit entries in that time.")
        return
    print_table(
        ["TIME", "WHO", "FROM", "CALL", "TARGET", "OUTCOME"],
        [[fmt_time(r.at), r.who, r.peer, r.rpc, r.target or "-", r.outcome] for r in records],
    )
