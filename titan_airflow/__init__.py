"""Airflow integration: run Airflow tasks on Titan, and start Airflow DAG runs from Titan.

`from titan_airflow import TitanOperator, TitanPipelineOperator, TitanHook, TitanJobTrigger`.

The names are loaded on first use, so `titan_airflow.bridge` (which needs only
apache-airflow-client) can be imported inside a Titan job where Airflow itself is not installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from titan_airflow.hooks import TitanHook
    from titan_airflow.operators import TitanOperator
    from titan_airflow.pipeline import TitanPipelineOperator
    from titan_airflow.triggers import TitanJobTrigger

_WHERE = {
    "TitanOperator": "titan_airflow.operators",
    "TitanPipelineOperator": "titan_airflow.pipeline",
    "TitanHook": "titan_airflow.hooks",
    "TitanJobTrigger": "titan_airflow.triggers",
}

__all__ = ["TitanHook", "TitanJobTrigger", "TitanOperator", "TitanPipelineOperator"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'titan_airflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
