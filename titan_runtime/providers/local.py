"""Local provider: each worker is a `titan-runtime worker` child process of the master.

Workers are tracked and stopped by pid, and started with the parent-death flag, so none outlives
the master. A worker that exits is reported once (`exited`) and never restarted here: whether
the pool needs another is the autoscaler's decision, and it will be a new launch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from titan_runtime import config
from titan_runtime.providers.base import LaunchRequest, Provider, ProviderError

log = logging.getLogger("titan.providers.local")

STOP_GRACE = 10.0  # seconds from SIGINT to SIGKILL


def describe_returncode(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def log_tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class LocalProvider(Provider):
    settings_keys: ClassVar[dict[str, type]] = {"python": str, "worker_args": list}

    @classmethod
    def from_pool(cls, name: str, settings: dict[str, Any], data_dir: Path) -> LocalProvider:
        return cls(settings, data_dir)

    def __init__(self, settings: dict[str, Any], data_dir: Path) -> None:
        self.python = settings.get("python") or sys.executable
        self.extra_args = list(settings.get("worker_args", []))
        self.data_dir = data_dir
        self.log_dir = data_dir / "pools"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._retired: set[str] = set()

    def log_path(self, launch_id: str) -> Path:
        return self.log_dir / f"{launch_id}.log"

    async def launch(self, request: LaunchRequest) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.python,
            "-m",
            "titan_runtime",
            *request.worker_args(),
            "--work-dir",
            str(self.data_dir / "workers" / request.launch_id),
            "--exit-with-parent",
            str(os.getpid()),
            *self.extra_args,
            *(request.tls.args() if request.tls is not None else ()),
        ]
        path = self.log_path(request.launch_id)
        try:
            with open(path, "ab") as logfile:
                proc = config.start_worker(argv, request.token, stdout=logfile, stderr=logfile)
        except OSError as exc:
            raise ProviderError(
                f"cannot start {self.python}: {exc.strerror or exc}; set the pool's `python` to an interpreter "
                "with titan-runtime installed"
            ) from None
        self.procs[request.launch_id] = proc
        log.info("pool %s: started worker %s (pid %d)", request.pool, request.launch_id, proc.pid)

    def exited(self) -> list[tuple[str, str]]:
        gone = []
        for launch_id, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.procs[launch_id]
            if launch_id in self._retired:
                self._retired.discard(launch_id)
                continue
            how = describe_returncode(code)
            tail = log_tail(self.log_path(launch_id), 3)
            gone.append(
                (launch_id, f"{how}; its log {self.log_path(launch_id)} ends with: {tail}" if tail else how)
            )
        return gone

    async def retire(self, launch_id: str, reason: str, force: bool) -> None:
        proc = self.procs.get(launch_id)
        if proc is None:
            return
        self._retired.add(launch_id)
        if proc.poll() is None and force:
            log.info("stopping worker %s (pid %d): %s", launch_id, proc.pid, reason)
            proc.send_signal(signal.SIGINT)
        await self._reap(proc, STOP_GRACE)

    @staticmethod
    async def _reap(proc: subprocess.Popen[bytes], grace: float) -> None:
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            await asyncio.to_thread(proc.wait)

    async def close(self) -> None:
        procs = list(self.procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        await asyncio.gather(*(self._reap(proc, STOP_GRACE) for proc in procs))
        self.procs.clear()
