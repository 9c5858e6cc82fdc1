"""`titan-runtime mcp`: the MCP server for LLM agents (titan_runtime/mcp_server.py), on stdio."""

from __future__ import annotations

from pathlib import Path

import click

from titan_runtime.cli.options import client_options
from titan_runtime.client.sync import TitanClient


@click.command("mcp")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where the files that submitted jobs name are found.",
)
@client_options
def mcp(client: TitanClient, workdir: Path) -> None:
    """Serve the cluster to an LLM agent over the Model Context Protocol (stdio; the mcp extra).

    \b
    Tools: submit_dag, run_status, job_status, read_logs, kv_get, kv_put,
    list_approvals, decide_approval, cancel_run. A read token gets the read tools only.
    Claude Desktop, for example (claude_desktop_config.json):
      {"mcpServers": {"titan": {"command": "titan-runtime", "args": ["mcp"],
                                "env": {"TITAN_ADDRESS": "host:9090", "TITAN_TOKEN": "..."}}}}
    """
    try:
        from titan_runtime.mcp_server import build_server
    except ImportError as exc:
        raise click.ClickException(
            f"`titan-runtime mcp` needs the mcp extra ({(exc.name or str(exc)).split('.')[0]} is not "
            "installed): pip install 'titan-runtime[mcp]'"
        ) from None
    build_server(client, workdir.resolve()).run("stdio")
