"""Fixtures for the Dagster integration: a real Titan cluster with a CPU and a GPU-tagged worker,
and a Dagster instance on disk (SQLite) that the step processes on those workers share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest

from tests.helpers import ProcessCluster

if TYPE_CHECKING:
    from dagster import DagsterInstance

try:
    import dagster  # noqa: F401
except ModuleNotFoundError:
    # Without the dagster extra (make installs it) there is nothing here to run.
    collect_ignore_glob = ["*.py"]


#: Runs a test twice: steps (and run workers) forked warm from a launcher that imported Dagster
#: (the default) and cold (`warm: false`), expecting the same outcome. Tests take `warm`, and pass it
#: to `run_config`; the run launcher fixtures take it from the `warm` fixture it overrides.
warm_and_cold = pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])


@pytest.fixture
def warm() -> bool:
    """Warm unless a test is parametrized by `warm_and_cold` (which overrides this)."""
    return True


def preloaded(parent: list[str]) -> list[str]:
    """What the worker's launcher that forked a process had imported, from that launcher's command
    line (`... launcher_main.py FD [PACKAGE ...]`): ["dagster", "titan_dagster.warm"] warm, [] cold."""
    [main] = [i for i, part in enumerate(parent) if part.endswith("launcher_main.py")]  # forked either way
    return parent[main + 2 :]  # after its socket's fd


def preloaded_for(pid: int) -> list[str]:
    """`preloaded` for a running process, by its pid."""
    parent = psutil.Process(pid).parent()
    assert parent is not None, f"pid {pid} has no parent"
    return preloaded(parent.cmdline())


def expected_preload(warm: bool) -> list[str]:
    return ["dagster", "titan_dagster.warm"] if warm else []


@pytest.fixture
def titan(make_cluster) -> ProcessCluster:  # type: ignore[no-untyped-def]
    """A master, an untagged worker "cpu" and a worker "gpu" tagged GPU."""
    cluster = make_cluster()
    cluster.add_worker("cpu", slots=2)
    cluster.add_worker("gpu", tags=["GPU"], slots=2)
    return cluster


def titan_compute_logs(cluster: ProcessCluster) -> dict[str, Any]:
    return {
        "module": "titan_dagster",
        "class": "TitanComputeLogManager",
        "config": {"address": cluster.address, "token": cluster.token},
    }


@pytest.fixture
def instance(titan: ProcessCluster, tmp_path: Path) -> Iterator[DagsterInstance]:
    """A Dagster instance on disk whose compute logs are read from Titan."""
    from dagster import instance_for_test

    home = tmp_path / "dagster-home"
    home.mkdir()
    with instance_for_test(temp_dir=str(home), overrides={"compute_logs": titan_compute_logs(titan)}) as inst:
        yield inst


def run_config(cluster: ProcessCluster, ops: dict[str, Any] | None = None, **executor: Any) -> dict[str, Any]:
    """Run config pointing titan_executor at `cluster`, with fast polling for tests."""
    config: dict[str, Any] = {
        "execution": {
            "config": {
                "address": cluster.address,
                "token": cluster.token,
                "health_check_interval": 1,
                "poll_interval": 0.1,
                **executor,
            }
        }
    }
    if ops:
        config["ops"] = ops
    return config
