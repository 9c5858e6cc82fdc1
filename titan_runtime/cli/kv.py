"""The KV store: `kv put|get|list|delete|incr|sadd|srem|smembers`."""

from __future__ import annotations

import json
from typing import BinaryIO

import click

from titan_runtime.cli.options import (
    client_options,
    fail,
)
from titan_runtime.client.sync import TitanClient
from titan_runtime.store import MAX_KV_VALUE_BYTES


@click.group()
def kv() -> None:
    """The cluster's durable key-value store (values and sets of UTF-8 text)."""


@kv.command("put")
@click.argument("key")
@click.argument("value", required=False)
@click.option(
    "--file",
    "value_file",
    type=click.File("rb"),
    default=None,
    help="Read the value from FILE ('-': standard input) instead of the command line.",
)
@client_options
def kv_put(client: TitanClient, key: str, value: str | None, value_file: BinaryIO | None) -> None:
    """Set KEY to VALUE; VALUE '-' reads it from standard input (as does --file -).

    A value is UTF-8 text of at most 1 MB; larger data belongs in an artifact."""
    if (value is None) == (value_file is None) and value != "-":
        fail("give the value as VALUE, as '-' (standard input) or with --file FILE, and only one of them", 2)
    if value == "-" or value_file is not None:
        stream = value_file or click.get_binary_stream("stdin")
        data = stream.read(MAX_KV_VALUE_BYTES + 1)
        if len(data) > MAX_KV_VALUE_BYTES:
            fail(
                f"the value is over the KV limit of {MAX_KV_VALUE_BYTES:,} bytes; keep large data in an "
                "artifact (the SDK's publish_artifact) and its name in the KV store"
            )
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            fail("the value is not UTF-8 text; keep binary data in an artifact (the SDK's publish_artifact)")
    assert value is not None
    client.store_put(key, value)


@kv.command("get")
@click.argument("key")
@click.option("--raw", is_flag=True, help="Print the value exactly, without adding a newline.")
@client_options
def kv_get(client: TitanClient, key: str, raw: bool) -> None:
    """Print KEY's value; exit 1 when it has none."""
    value = client.store_get(key)
    if value is None:
        fail(f"no value for key {key!r}")
    click.echo(value, nl=not raw)


@kv.command("list")
@click.argument("prefix", default="")
@click.option("--limit", type=click.IntRange(min=0), default=0, help="At most this many keys (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {key, kind}.")
@client_options
def kv_list(client: TitanClient, prefix: str, limit: int, as_json: bool) -> None:
    """List the keys that start with PREFIX (every key without one), in order, one per line."""
    keys = client.store_keys(prefix, limit)
    if as_json:
        click.echo(json.dumps([{"key": key, "kind": kind} for key, kind in keys.items()], indent=2))
        return
    for key in keys:
        click.echo(key)


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
