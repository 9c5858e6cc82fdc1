"""What a worker is started with (`titan-runtime worker`'s options, or a provider's)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from titan_runtime.diskspace import DEFAULT_MIN_FREE
from titan_runtime.tls import ClientTls
from titan_runtime.worker.jobuser import JobUser
from titan_runtime.worker.project import ProjectLimits


@dataclass
class WorkerConfig:
    master: str  # HOST:PORT, or several comma-separated: masters sharing a store (docs/ha.md)
    token: str
    name: str
    work_dir: Path
    tags: frozenset[str] = frozenset()
    slots: int = 1
    kill_grace: float = 10.0
    drain_timeout: float = 60.0  # SIGTERM: how long running attempts may take to finish
    keep_workspaces: bool = False
    python_launcher: str = "fork"  # or "exec": how Python jobs start (worker/launcher.py)
    preload: tuple[str, ...] = ()  # packages a second launcher imports, for `-m` jobs of them
    worker_id: str = ""
    port_range: tuple[int, int] = (20000, 32000)  # where services' ports are leased
    advertise_host: str = ""  # how others reach this worker's services; default: the route to the master
    tls: ClientTls | None = None  # None: plaintext
    min_free: str = DEFAULT_MIN_FREE  # the work dir's free-space watermark: job output is cut below it
    project_limits: ProjectLimits = field(default_factory=ProjectLimits)
    pool: str = ""  # set by the provider that started it for an autoscaled pool
    provider: str = ""
    launch_id: str = ""
    job_user: JobUser | None = None  # --job-user: who jobs run as (None: this worker's own user)
    # What it offers jobs beyond slots (--cpus, --memory, --gpus); None: detected.
    cpus: int | None = None
    memory_mb: int | None = None
    gpus: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.worker_id:
            self.worker_id = f"{self.name}-{os.urandom(3).hex()}"
