"""The Python SDK: `TitanClient`, its asyncio twin, `TitanJob`, records and errors."""

from titan_runtime.client.aio import AsyncTitanClient
from titan_runtime.client.errors import (
    Conflict,
    InvalidJob,
    JobNotFound,
    PermissionDenied,
    TitanConnectionError,
    TitanError,
    Unauthenticated,
)
from titan_runtime.client.job import TitanJob
from titan_runtime.client.records import AttemptRecord, JobRecord, LogLine, RunRecord, WorkerRecord
from titan_runtime.client.sync import TitanClient

__all__ = [
    "AsyncTitanClient",
    "AttemptRecord",
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
]
