"""Titan: a lightweight distributed execution runtime.

`from titan_runtime import TitanClient, TitanJob` for the SDK; `from titan_runtime import task`
inside a running job.
"""

from titan_runtime.client import (
    AsyncTitanClient,
    Conflict,
    InvalidJob,
    JobNotFound,
    JobRecord,
    LogLine,
    PermissionDenied,
    RunRecord,
    TitanClient,
    TitanConnectionError,
    TitanError,
    TitanJob,
    Unauthenticated,
    WorkerRecord,
    task,
)
from titan_runtime.version import __version__

__all__ = [
    "AsyncTitanClient",
    "Conflict",
    "InvalidJob",
    "JobNotFound",
    "JobRecord",
    "LogLine",
    "PermissionDenied",
    "RunRecord",
    "TitanClient",
    "TitanConnectionError",
    "TitanError",
    "TitanJob",
    "Unauthenticated",
    "WorkerRecord",
    "__version__",
    "task",
]
