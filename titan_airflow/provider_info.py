"""What Airflow's providers manager reads through the `apache_airflow_provider` entry point.

It registers the `titan` connection type, so it appears in the UI's connection form with only
the fields Titan uses (host, port, and the cluster token in the password field). Importing this
module must stay cheap and must not import Airflow: the providers manager imports it at start.
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
            {
                "hook-class-name": "titan_airflow.hooks.TitanHook",
                "connection-type": "titan",
                "hook-name": "Titan",
                # Declarative form metadata (Airflow 3.2+): the UI shows host, port and the token.
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "extra"],
                    "relabeling": {"host": "Master host", "port": "Master port", "password": "Cluster token"},
                    "placeholders": {
                        "host": "127.0.0.1",
                        "port": "9090",
                        "password": "contents of the master's DATA_DIR/token (default ~/.titan/token)",
                    },
                },
            }
        ],
    }
