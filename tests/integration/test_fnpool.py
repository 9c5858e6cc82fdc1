"""The worker's warm processes for function tasks, driven directly (real fn_main processes, no
master): reuse within a run, none across runs, and retirement after N tasks, past a memory
limit, when idle, and when killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from titan_runtime.client import functions
from titan_runtime.worker import launcher
from titan_runtime.worker.fnpool import FunctionPool

pytestmark = pytest.mark.skipif(not launcher.supported(), reason="warm processes need Linux's pidfds")


def getpid() -> int:
    return os.getpid()


def grow() -> int:
    held = b"\x01" * (64 * 1024 * 1024)
    sys.titan_test_held = held  # type: ignore[attr-defined]  # kept by the process, not the task
    return len(held)


async def run_task(
    pool: FunctionPool, run_id: str, fn: Callable[..., Any], tmp: Path, *args: Any
) -> tuple[int | None, Any]:
    """Hand one call to the pool as the worker does; (exit code, its value or error envelope)."""
    result_file = tmp / f"result-{os.urandom(4).hex()}"
    ended: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
    out_r, out_w = os.pipe()
    with open(os.devnull, "rb") as devnull:
        call = pool.call(run_id, functions.encode_call(fn, args, {}), {})
        started = call.spawn(
            [],
            tmp,
            {"TITAN_RESULT_FILE": str(result_file)},
            (devnull.fileno(), out_w, out_w),
            ended.set_result,
        )
    os.close(out_w)
    pid = await started
    code = await asyncio.wait_for(ended, 30)
    os.close(out_r)
    envelope = json.loads(result_file.read_text()) if result_file.exists() else {}
    value = functions.load_value(envelope) if functions.VALUE in envelope else envelope
    return code, (pid, value)


def test_a_runs_tasks_share_a_process_other_runs_do_not(tmp_path: Path) -> None:
    async def main() -> None:
        pool = FunctionPool(dict(os.environ))
        try:
            first = await run_task(pool, "r1", getpid, tmp_path)
            second = await run_task(pool, "r1", getpid, tmp_path)
            assert first[0] == 0 and first[1][1] == first[1][0] == second[1][1]  # same warm process
            other = await run_task(pool, "r2", getpid, tmp_path)
            assert other[1][1] != first[1][1]
            assert pool.started == 2
            assert list(pool.idle) == ["r2"]  # r1's idle process made way for r2's
        finally:
            pool.close()

    asyncio.run(main())


def test_a_process_is_retired_after_its_tasks_its_memory_or_idleness(tmp_path: Path) -> None:
    async def main() -> None:
        pool = FunctionPool(dict(os.environ), max_tasks=2, max_rss=48 * 1024 * 1024, idle_seconds=0.2)
        try:
            pids = [(await run_task(pool, "r", getpid, tmp_path))[1][1] for _ in range(4)]
            assert pids[0] == pids[1] != pids[2] == pids[3]  # two tasks each
            big = await run_task(pool, "r", grow, tmp_path)
            after = await run_task(pool, "r", getpid, tmp_path)
            assert after[1][1] != big[1][0]  # over the memory limit: not kept
            deadline = asyncio.get_running_loop().time() + 10
            while pool.idle and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            assert not pool.idle  # idle too long: retired
        finally:
            pool.close()

    asyncio.run(main())


def test_a_killed_process_ends_its_task_with_the_signal_and_is_not_reused(tmp_path: Path) -> None:
    async def main() -> None:
        # As a full test run once left this process: SIGTERM blocked, which children inherit.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
        try:
            pool = FunctionPool(dict(os.environ))
            await run_task(pool, "r", getpid, tmp_path)  # its warm process started meanwhile
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        try:
            first = (await run_task(pool, "r", getpid, tmp_path))[1][1]
            result_file = tmp_path / "sleep"
            ended: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
            with open(os.devnull, "rb") as devnull:
                call = pool.call("r", functions.encode_call(__import__("time").sleep, (60,), {}), {})
                pid = await call.spawn([], tmp_path, {"TITAN_RESULT_FILE": str(result_file)},
                                       (devnull.fileno(),) * 3, ended.set_result)  # fmt: skip
            assert pid == first
            os.killpg(pid, signal.SIGTERM)  # what a cancel does
            assert await asyncio.wait_for(ended, 30) == -signal.SIGTERM
            again = (await run_task(pool, "r", getpid, tmp_path))[1][1]
            assert again != first
        finally:
            pool.close()

    asyncio.run(main())


def test_closing_the_pool_leaves_no_process(tmp_path: Path) -> None:
    async def main() -> list[int]:
        pool = FunctionPool(dict(os.environ))
        pids = [(await run_task(pool, run, getpid, tmp_path))[1][1] for run in ("a", "b")]
        pool.close()
        return pids

    for pid in asyncio.run(main()):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert sys.executable  # the pool started its processes with the worker's interpreter


def leave_a_thread() -> int:
    import threading
    import time

    threading.Thread(target=time.sleep, args=(3600,), daemon=False).start()  # never ends
    return 1


def test_a_process_a_task_left_a_thread_in_still_leaves_when_told(tmp_path: Path) -> None:
    async def main() -> int | None:
        pool = FunctionPool(dict(os.environ))
        await run_task(pool, "r", leave_a_thread, tmp_path)
        (process,) = pool.idle["r"]
        pool.close()  # its non-daemon thread would keep an interpreter's exit waiting
        return process.proc.returncode

    assert asyncio.run(main()) == 0  # it left by itself: not killed after close's 2 s
