"""The KV store: `kv put|get|delete|incr|sadd|srem|smembers`."""

from __future__ import annotations

import click

from titan_runtime.cli.options import (
    client_options,
    fail,
)
from titan_runtime.client.sync import TitanClient


@click.group()
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
