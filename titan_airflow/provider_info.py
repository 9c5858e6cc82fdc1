"""What Airflow's providers manager reads through the `apache_airflow_provider` entry point.

It registers the `titan` connection type (so it appears in the UI's connection form, with the
fields relabelled by `TitanHook.get_ui_field_behaviour`). Importing this module must stay cheap
and must not import Airflow: the providers manager imports it while Airflow starts.
"""

from __future__ import annotations

from typing import Any

from titan_runtime.version import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "titan-runtime",
        "name": "Titan",
        "description": "Run Airflow tasks on Titan workers: TitanOperator, TitanPipelineOperator, "
        "TitanJobTrigger and the `titan` connection type.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Titan",
                "external-doc-url": "https://github.com/ramn51/titan-orchestrator",
                "python-modules": ["titan_airflow.operators", "titan_airflow.pipeline"],
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "Titan",
                "python-modules": ["titan_airflow.operators", "titan_airflow.pipeline"],
            }
        ],
        "hooks": [{"integration-name": "Titan", "python-modules": ["titan_airflow.hooks"]}],
        "triggers": [{"integration-name": "Titan", "python-modules": ["titan_airflow.triggers"]}],
        "connection-types": [
            {"hook-class-name": "titan_airflow.hooks.TitanHook", "connection-type": "titan"}
        ],
    }
