"""Dagster on Titan: Dagster keeps the UI, the asset graph and lineage; Titan runs the processes.

- `titan_executor`: each step runs as a Titan job on a worker chosen by its tags.
- `TitanRunLauncher`: the run worker itself runs as a Titan job (dagster.yaml `run_launcher:`).
- `TitanComputeLogManager`: the UI reads step output from the Titan master, live (dagster.yaml `compute_logs:`).
- `TitanResource` and `PipesTitanClient`: an asset runs a script on Titan and hears back through Dagster Pipes.

See docs/dagster.md.
"""

from __future__ import annotations

import warnings

from titan_dagster._compat import DAGSTER_VERSION, SUPPORTED, is_supported
from titan_dagster.compute_logs import TitanComputeLogManager
from titan_dagster.errors import TitanConfigError
from titan_dagster.executor import titan_executor
from titan_dagster.pipes import PipesTitanClient, PipesTitanLogsMessageReader
from titan_dagster.placement import TAG_PRIORITY, TAG_REQUIREMENT, TAG_RESOURCES, TAG_TIMEOUT
from titan_dagster.resource import TitanResource
from titan_dagster.run_launcher import TitanRunLauncher

if not is_supported():
    warnings.warn(
        f"titan_dagster was verified with dagster {' and '.join(SUPPORTED)}, not {DAGSTER_VERSION}; "
        "if something breaks, the Dagster internals it uses are all in titan_dagster/_compat.py",
        stacklevel=2,
    )

__all__ = [
    "TAG_PRIORITY",
    "TAG_REQUIREMENT",
    "TAG_RESOURCES",
    "TAG_TIMEOUT",
    "PipesTitanClient",
    "PipesTitanLogsMessageReader",
    "TitanComputeLogManager",
    "TitanConfigError",
    "TitanResource",
    "TitanRunLauncher",
    "titan_executor",
]
