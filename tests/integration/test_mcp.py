"""`titan-runtime mcp` against a live cluster, driven by the `mcp` package's own client over stdio,
as an agent's host drives it: it starts the command as a subprocess and calls its tools."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ProcessCluster

mcp = pytest.importorskip("mcp", reason="the mcp extra is not installed: pip install -e '.[mcp]'")
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

pytestmark = pytest.mark.integration
READS = {"run_status", "job_status", "read_logs", "kv_get", "list_approvals"}
CHANGES = {"submit_dag", "kv_put", "decide_approval", "cancel_run"}


def server(cluster: ProcessCluster, token: str) -> StdioServerParameters:
    # The client passes only a minimal environment on: the address and credential are given here.
    env = {
        "TITAN_ADDRESS": cluster.address,
        "TITAN_TOKEN": token,
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    return StdioServerParameters(command=sys.executable, args=["-m", "titan_runtime", "mcp"], env=env,
                                 cwd=str(cluster.root))  # fmt: skip


def session(params: StdioServerParameters, body: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Client(params) as client:
            await body(client)

    asyncio.run(main())


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, (tool, result.content)
    if result.structured_content is not None:
        value = result.structured_content
        return value.get("result", value) if isinstance(value, dict) and set(value) == {"result"} else value
    return json.loads(result.content[0].text)


async def until(probe: Callable[[], Awaitable[Any]], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_an_agent_submits_follows_and_decides_through_the_tools(cluster: ProcessCluster) -> None:
    (cluster.root / "count.py").write_text("for i in range(3000):\n    print('line', i)\n")

    async def body(client: Client) -> None:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert tools == READS | CHANGES
        run = await call(client, "submit_dag", name="agent", jobs=[
            {"id": "count", "file": "count.py"},
            {"id": "after", "command": ["true"], "depends_on": ["count"], "hitl_message": "ship it?"},
            {"id": "last", "command": ["true"], "depends_on": ["after"]},
        ])  # fmt: skip
        run_id = run["run_id"]
        assert run["jobs"] == [f"{run_id}/count", f"{run_id}/after", f"{run_id}/last"]

        gates = await until(lambda: call(client, "list_approvals"), "the approval gate")
        assert [(g["ref"], g["message"]) for g in gates] == [(f"{run_id}/after", "ship it?")]
        decided = await call(client, "decide_approval", job=f"{run_id}/after", approve=True, comment="ok")
        assert decided["ref"] == f"{run_id}/after"

        async def ended() -> Any:
            status = await call(client, "run_status", run_id=run_id)
            return status if status["state"] != "RUNNING" else None

        status = await until(ended, "the run to end")
        assert (status["state"], status["counts"]) == ("SUCCEEDED", {"SUCCEEDED": 3})
        assert [j["ref"] for j in status["jobs"]] == run["jobs"] and status["jobs_left_out"] == 0
        one = await call(client, "run_status", run_id=run_id, limit=1)
        assert len(one["jobs"]) == 1 and one["jobs_left_out"] == 2

        tail = await call(client, "read_logs", job=f"{run_id}/count", tail=5)
        assert tail["text"].splitlines() == [f"line {i}" for i in range(2995, 3000)] and tail["job_ended"]
        page = await call(client, "read_logs", job=f"{run_id}/count", offset=1)  # from past the start
        assert page["more"] and len(page["text"].splitlines()) == 2000
        rest = await call(client, "read_logs", job=f"{run_id}/count", offset=page["next_offset"])
        assert not rest["more"] and rest["text"].splitlines()[-1] == "line 2999"

        assert await call(client, "kv_put", key="agent/answer", value="42") == {
            "key": "agent/answer",
            "stored": True,
        }
        assert (await call(client, "kv_get", key="agent/answer"))["value"] == "42"

        long = await call(
            client, "submit_dag", yaml_text="name: long\njobs:\n  - id: sleep\n    command: [sleep, '300']\n"
        )
        await until(lambda: _running(client, long["jobs"][0]), "the long job to run")
        cancelled = await call(client, "cancel_run", run_id=long["run_id"])
        assert cancelled["cancelled"] == [long["jobs"][0]]

        missing = await client.call_tool("job_status", {"job": f"{run_id}/nope"})
        assert missing.is_error and f"run {run_id} has no job 'nope'" in missing.content[0].text
        both = await client.call_tool("submit_dag", {"yaml_text": "name: x", "jobs": [{"id": "a"}]})
        assert both.is_error and "give either yaml_text" in both.content[0].text

    session(server(cluster, cluster.token), body)


async def _running(client: Client, ref: str) -> bool:
    return (await call(client, "job_status", job=ref))["state"] == "RUNNING"


def test_a_read_token_gets_the_read_tools_only(cluster: ProcessCluster) -> None:
    token, _ = cluster.client.create_token("read", "agent-reader")
    cluster.client.store_put("shared", "hello")

    async def body(client: Client) -> None:
        assert {t.name for t in (await client.list_tools()).tools} == READS
        assert (await call(client, "kv_get", key="shared"))["value"] == "hello"
        refused = await client.call_tool("kv_put", {"key": "shared", "value": "changed"})
        assert refused.is_error

    session(server(cluster, token), body)
    assert cluster.client.store_get("shared") == "hello"


def test_without_a_master_the_command_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run(
        [sys.executable, "-m", "titan_runtime", "mcp", "--address", f"127.0.0.1:{port}", "--token", "x"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "TITAN_RECONNECT_TIMEOUT": "0"},
    )  # fmt: skip
    assert done.returncode == 1 and not done.stdout
    assert done.stderr.startswith(f"titan-runtime: error: cannot reach the Titan master at 127.0.0.1:{port}")
    assert "Traceback" not in done.stderr
