"""The suite proves things about titan_executor only because it never uses `execute_in_process`,
which silently swaps any executor for the in-process one. This test shows the difference, and
that no other test of the integration calls it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from dagster import DagsterInstance, execute_job, reconstructable

from tests.dagster import jobs
from tests.dagster.conftest import expected_preload, preloaded, run_config, warm_and_cold
from tests.helpers import ProcessCluster
from titan_dagster import naming

pytestmark = pytest.mark.integration


def test_execute_in_process_would_prove_nothing_and_execute_job_runs_on_titan(
    titan: ProcessCluster, instance: DagsterInstance
) -> None:
    in_process = jobs.whereami_job.execute_in_process(instance=instance)
    assert in_process.success
    here = in_process.output_for_node("whereami")
    assert here["pid"] == os.getpid() and here["titan_job"] == ""  # ran right here
    assert titan.client.list_runs() == []  # and Titan never heard of it

    with execute_job(
        reconstructable(jobs.whereami_job), instance=instance, run_config=run_config(titan)
    ) as result:
        assert result.success
        there = result.output_for_node("whereami")
        run_id = result.run_id
    assert there["pid"] != os.getpid()
    assert there["titan_run"] == naming.step_run_id(run_id, "whereami", 0)
    assert there["worker"] in ("cpu", "gpu")
    assert [r.id for r in titan.client.list_runs()] == [there["titan_run"]]


@warm_and_cold
def test_a_warm_step_is_forked_from_a_launcher_that_imported_dagster(
    titan: ProcessCluster, instance: DagsterInstance, warm: bool
) -> None:
    """titan_executor's `warm` (the default): the step asks its worker to preload Dagster, and the
    worker (started without --preload) forks it from a launcher it started for that; `warm: false`:
    from the plain launcher, which imported nothing."""
    config = run_config(titan) if warm else run_config(titan, warm=False)
    with execute_job(reconstructable(jobs.whereami_job), instance=instance, run_config=config) as result:
        assert result.success
        parent = result.output_for_node("whereami")["parent"]
    assert preloaded(parent) == expected_preload(warm)


def test_no_other_test_of_the_integration_uses_execute_in_process() -> None:
    here = Path(__file__)
    offenders = [
        path.name
        for path in here.parent.rglob("*.py")
        if path != here and re.search(r"\.execute_in_process\(", path.read_text())
    ]
    assert offenders == []
