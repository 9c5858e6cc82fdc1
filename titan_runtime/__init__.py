"""Titan: a lightweight distributed execution runtime.

`from titan_runtime import TitanClient, TitanJob` for the SDK; `from titan_runtime import task`
inside a running job. Names load on first use, so a job that only calls `task.set_result`
does not pay for importing gRPC.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from titan_runtime.version import __version__

_EXPORTS = {
    "AsyncTitanClient": "titan_runtime.client.aio",
    "TitanClient": "titan_runtime.client.sync",
    "TitanJob": "titan_runtime.client.job",
    "Run": "titan_runtime.client.run",
    "AsyncRun": "titan_runtime.client.run",
    "JobRecord": "titan_runtime.client.records",
    "RunRecord": "titan_runtime.client.records",
    "WorkerRecord": "titan_runtime.client.records",
    "LogLine": "titan_runtime.client.records",
    "TitanError": "titan_runtime.client.errors",
    "TitanConnectionError": "titan_runtime.client.errors",
    "Unauthenticated": "titan_runtime.client.errors",
    "PermissionDenied": "titan_runtime.client.errors",
    "JobNotFound": "titan_runtime.client.errors",
    "InvalidJob": "titan_runtime.client.errors",
    "Conflict": "titan_runtime.client.errors",
    "ResourceExhausted": "titan_runtime.client.errors",
    "TitanTimeoutError": "titan_runtime.client.errors",
    "TitanFuture": "titan_runtime.client.futures",
    "TaskFailed": "titan_runtime.client.futures",
    "remote": "titan_runtime.client.futures",
    "RemoteError": "titan_runtime.client.functions",
}

__all__ = [
    "AsyncRun",
    "AsyncTitanClient",
    "Conflict",
    "InvalidJob",
    "JobNotFound",
    "JobRecord",
    "LogLine",
    "PermissionDenied",
    "ResourceExhausted",
    "RemoteError",
    "Run",
    "RunRecord",
    "TaskFailed",
    "TitanClient",
    "TitanConnectionError",
    "TitanError",
    "TitanFuture",
    "TitanJob",
    "TitanTimeoutError",
    "Unauthenticated",
    "WorkerRecord",
    "__version__",
    "remote",
    "task",
]

if TYPE_CHECKING:
    from titan_runtime.client import task
    from titan_runtime.client.aio import AsyncTitanClient
    from titan_runtime.client.errors import (
        Conflict,
        InvalidJob,
        JobNotFound,
        PermissionDenied,
        ResourceExhausted,
        TitanConnectionError,
        TitanError,
        TitanTimeoutError,
        Unauthenticated,
    )
    from titan_runtime.client.functions import RemoteError
    from titan_runtime.client.futures import TaskFailed, TitanFuture, remote
    from titan_runtime.client.job import TitanJob
    from titan_runtime.client.records import JobRecord, LogLine, RunRecord, WorkerRecord
    from titan_runtime.client.run import AsyncRun, Run
    from titan_runtime.client.sync import TitanClient


def __getattr__(name: str) -> Any:
    if name == "task":
        return importlib.import_module("titan_runtime.client.task")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'titan_runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
