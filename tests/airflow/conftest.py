"""Fixtures of the Airflow tests: one migrated AIRFLOW_HOME per session, DAG runs stopped by pid.

Airflow is never imported into the pytest process (its import configures logging and settings
globally); everything Airflow runs in subprocesses started by `harness`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.harness import AirflowHome, RunningDag, migrate, start_dag
from tests.helpers import ProcessCluster

AIRFLOW_MISSING = importlib.util.find_spec("airflow") is None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not AIRFLOW_MISSING:
        return
    skip = pytest.mark.skip(reason="apache-airflow is not installed: pip install -e '.[airflow]'")
    for item in items:
        if "tests/airflow/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    """`airflow db migrate` once per session into a temporary AIRFLOW_HOME."""
    home = AirflowHome(tmp_path_factory.mktemp("airflow_home"))
    migrate(home)
    return home


@pytest.fixture
def run_dag(airflow_home: AirflowHome, tmp_path: Path) -> Iterator[Callable[..., RunningDag]]:
    """Start `dag.test()` of a test DAG in a subprocess; whatever is still running at the end is killed."""
    started: list[RunningDag] = []

    def start(
        dag_id: str, cluster: ProcessCluster, conf: dict[str, Any] | None = None, **kw: Any
    ) -> RunningDag:
        running = start_dag(airflow_home, tmp_path / "airflow-runs", dag_id, cluster, conf, **kw)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
