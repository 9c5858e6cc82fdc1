"""The `titan` Airflow plugin (entry point `airflow.plugins`): its listener (titan_airflow/listener.py)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from titan_airflow import listener


class TitanPlugin(AirflowPlugin):
    name = "titan"
    listeners = [listener]
