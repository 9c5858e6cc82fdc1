"""Every import from Dagster's private modules (`dagster._*`), in one place.

Dagster's executor, run-launcher and compute-log extension points live under `dagster._core`,
which Dagster may reshuffle in any minor release. Keeping every such import here means a new
Dagster version breaks exactly one file, and `SUPPORTED` says which versions were verified.
"""

from __future__ import annotations

import dagster
from dagster._cli.api import resume_run_command
from dagster._config.config_schema import UserConfigSchema
from dagster._core.errors import DagsterExecutionInterruptedError, DagsterPipesExecutionError
from dagster._core.events import EngineEventData
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.execution.tags import get_tag_concurrency_limits_config
from dagster._core.executor.step_delegating import (
    CheckStepHealthResult,
    StepDelegatingExecutor,
    StepHandler,
    StepHandlerContext,
)
from dagster._core.instance.ref import compute_logs_directory
from dagster._core.launcher import (
    CheckRunHealthResult,
    LaunchRunContext,
    ResumeRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.cloud_storage_compute_log_manager import (
    CloudStorageComputeLogManager,
    PollingComputeLogSubscriptionManager,
)
from dagster._core.storage.compute_log_manager import (
    CapturedLogContext,
    CapturedLogMetadata,
    CapturedLogSubscription,
    ComputeIOType,
)
from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION, LocalComputeLogManager
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData

#: Dagster minors this package was verified against (the test suite run on each).
SUPPORTED = ("1.12", "1.13")


#: The modules a step or run worker imports beyond `import dagster`, found by profiling one: its
#: instance's (the SQLite storages, which bring SQLAlchemy and Alembic: 0.3-0.5 s a process), and
#: loading a job and its run config. Named, not imported: titan_dagster.warm imports them in a
#: warm launcher, before it forks steps and run workers.
STEP_MODULES = (
    "dagster._core.instance.factory",
    "dagster._core.storage.root",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.definitions.repository_definition.repository_data_builder",
    "dagster._core.system_config.composite_descent",
    "dagster._utils.test",
    "upath.core",
    "upath.implementations.local",
)

DAGSTER_VERSION = dagster.__version__


def dagster_minor(version: str = DAGSTER_VERSION) -> str:
    return ".".join(version.split(".")[:2])


def is_supported(version: str = DAGSTER_VERSION) -> bool:
    # "1!0+dev" is what a source checkout of dagster reports: let developers run it.
    return dagster_minor(version) in SUPPORTED or version.startswith("1!")


__all__ = [
    "DAGSTER_VERSION",
    "IO_TYPE_EXTENSION",
    "SUPPORTED",
    "CapturedLogContext",
    "CapturedLogMetadata",
    "CapturedLogSubscription",
    "CheckRunHealthResult",
    "CheckStepHealthResult",
    "CloudStorageComputeLogManager",
    "ComputeIOType",
    "ConfigurableClass",
    "ConfigurableClassData",
    "DagsterExecutionInterruptedError",
    "DagsterPipesExecutionError",
    "EngineEventData",
    "ExecuteRunArgs",
    "LaunchRunContext",
    "LocalComputeLogManager",
    "PollingComputeLogSubscriptionManager",
    "ResumeRunArgs",
    "ResumeRunContext",
    "RetryMode",
    "RunLauncher",
    "StepDelegatingExecutor",
    "StepHandler",
    "StepHandlerContext",
    "UserConfigSchema",
    "WorkerStatus",
    "compute_logs_directory",
    "dagster_minor",
    "get_retries_config",
    "get_tag_concurrency_limits_config",
    "is_supported",
    "resume_run_command",
]
