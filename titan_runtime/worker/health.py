"""Health checks of a running service, run by its worker against 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from titan_runtime.proto import titan_pb2 as pb


async def check_once(check: pb.HealthCheck, port: int) -> str:
    """ "" when the service answers as it should, else what went wrong."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), check.timeout or 1.0
        )
    except (OSError, asyncio.TimeoutError) as exc:
        return f"cannot connect to port {port} ({exc.__class__.__name__})"
    try:
        if not check.http:
            return ""
        request = f"GET {check.http} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: titan-health\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), check.timeout or 1.0)
        parts = status_line.decode("latin-1").split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        expect = check.expect or 200
        return (
            "" if status == expect else f"GET {check.http} answered {status or 'nothing'}, expected {expect}"
        )
    except (OSError, asyncio.TimeoutError) as exc:
        return f"GET {check.http} failed ({exc.__class__.__name__})"
    finally:
        writer.close()


async def watch(
    check: pb.HealthCheck, port: int, on_healthy: Callable[[], None], on_unhealthy: Callable[[str], None]
) -> None:
    """Check every `interval` seconds after `grace`: report the first pass, then, once healthy,
    `failures` consecutive failed checks (after which the caller restarts the service).
    With neither a TCP nor an HTTP check, a started service counts as healthy."""
    if not check.tcp and not check.http:
        on_healthy()
        return
    await asyncio.sleep(check.grace)

    healthy = False
    failed = 0
    while True:
        problem = await check_once(check, port)
        if not problem:
            failed = 0
            if not healthy:
                healthy = True
                on_healthy()
        elif healthy:
            failed += 1
            if failed >= (check.failures or 3):
                on_unhealthy(f"health check failed {failed} times: {problem}")
                return
        await asyncio.sleep(check.interval or 1.0)
