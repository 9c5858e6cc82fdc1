"""`titan-runtime audit`: who changed what, from where, and how it ended (docs/security.md).
Registered on the main group by `cli/__init__.py`."""

from __future__ import annotations

import json
import time

import click

from titan_runtime.cli.options import client_options
from titan_runtime.cli.output import fmt_time, print_table
from titan_runtime.client.specs import parse_duration
from titan_runtime.client.sync import TitanClient


def _since(value: str | None) -> float:
    """--since: a duration back from now ("90s", "10m", "2h", "1d") or seconds since the epoch."""
    if not value:
        return 0.0
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: give a duration (90s, 10m, 2h, 1d) or seconds since the epoch", param_hint="--since"
        ) from None
    return seconds if seconds > 10**9 else time.time() - seconds


@click.command("audit")
@click.option(
    "--since", default=None, help="Entries from this long ago (90s, 10m, 2h, 1d) or this epoch time on."
)
@click.option("--limit", default=100, show_default=True, help="The latest N entries (at most 100,000).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@client_options
def audit(client: TitanClient, since: str | None, limit: int, as_json: bool) -> None:
    """Every call that changed something: when, by whom (the credential's kind, never the token),
    from where, on what, and how it ended. Needs the cluster token."""
    records = client.audit(_since(since), limit)
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
