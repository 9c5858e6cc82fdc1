"""Services: `services`, `service stop|restart|endpoint`."""

from __future__ import annotations

import json

import click

from titan_runtime.cli.options import (
    client_options,
)
from titan_runtime.cli.output import fmt_time, print_table
from titan_runtime.client.sync import TitanClient


@click.command()
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


@click.group()
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
