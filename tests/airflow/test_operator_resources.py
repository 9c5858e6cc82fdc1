"""TitanOperator's `titan_resources` (cpus, memory, gpus), without a Titan cluster: checked when the
DAG is parsed, templated values once rendered, carried into the job, and a DAG using it serialises
(Airflow itself runs in a subprocess, as everywhere in these tests)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.airflow.harness import PYTHON, AirflowHome

PROBE = """
import copy, json
from datetime import datetime
from types import SimpleNamespace

from airflow.sdk import DAG
from airflow.serialization.serialized_objects import DagSerialization

from titan_airflow import TitanOperator

TI = SimpleNamespace(dag_id="d", task_id="t", run_id="manual__1", try_number=1, map_index=-1)


def error(make):
    try:
        make()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def built(resources, params=None):
    op = TitanOperator(task_id="t", command=["true"], titan_resources=resources)
    if params is not None:
        op.render_template_fields({"params": params, "ti": TI})
    return op.build_job({"ti": TI}).resources


def job_or_error(resources, params=None):
    try:
        return {"job": built(resources, params)}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


seen = {
    "good": {
        "all": built({"cpus": 2, "memory": "8G", "gpus": 1}),
        "strings": built({"cpus": "500m", "memory": "1.5GiB", "gpus": "2"}),
        "memory_mb": built({"memory_mb": 512}),
        "zero": built({"gpus": 0}),
        "none": built(None),
        "templated": built({"gpus": "{{ params.gpus }}", "memory": "8G"}, {"gpus": "1"}),
    },
    "rendered_bad": job_or_error({"gpus": "{{ params.gpus }}"}, {"gpus": "x"}),
    "bad": {
        name: error(lambda value=value: TitanOperator(task_id="t", command=["true"], titan_resources=value))
        for name, value in {
            "not_a_dict": "gpus=1",
            "unknown": {"gpus": 1, "vram": "8G"},
            "unknown_templated": {"vram": "{{ params.vram }}"},
            "gpus": {"gpus": "two"},
            "fraction_of_a_gpu": {"gpus": 0.5},
            "memory": {"memory": "lots"},
            "cpus": {"cpus": -1},
            "both_memories": {"memory": "1G", "memory_mb": 1024},
            "memory_mb": {"memory_mb": "1G"},
        }.items()
    },
    "template_fields": list(TitanOperator.template_fields),
    "airflow_resources": error(lambda: TitanOperator(task_id="t", command=["true"], resources={"gpus": 1})),
}
with DAG("defaults", schedule=None, start_date=datetime(2024, 1, 1), default_args={"resources": {"cpus": 1}}):
    seen["default_args_resources"] = error(lambda: TitanOperator(task_id="t", command=["true"]))

with DAG("d", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    TitanOperator(task_id="t", command=["true"], titan_resources={"gpus": "{{ params.gpus }}"})
    TitanOperator.partial(task_id="m", command=["true"], titan_resources={"gpus": 1}).expand(args=[["a"], ["b"]])
back = DagSerialization.from_dict(DagSerialization.to_dict(dag))
seen["serialised"] = {
    "t": back.task_dict["t"].titan_resources,
    "m": back.task_dict["m"].partial_kwargs.get("titan_resources"),
}
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def seen(airflow_home: AirflowHome) -> dict[str, Any]:
    done = subprocess.run(
        [PYTHON, "-c", PROBE],
        env=airflow_home.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_job_gets_the_quantities_in_their_parsed_form(seen: dict[str, Any]) -> None:
    assert seen["good"] == {
        "all": {"cpus": 2.0, "memory_mb": 8192, "gpus": 1},
        "strings": {"cpus": 0.5, "memory_mb": 1536, "gpus": 2},
        "memory_mb": {"memory_mb": 512},
        "zero": None,
        "none": None,
        "templated": {"memory_mb": 8192, "gpus": 1},
    }


def test_a_templated_value_is_checked_once_rendered(seen: dict[str, Any]) -> None:
    assert seen["rendered_bad"] == {
        "error": "TitanConfigError: task t: titan_resources: resources.gpus must be a whole number "
        "of GPUs from 0 to 1024, not 'x'"
    }


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "not_a_dict",
            "titan_resources must be a dict such as {'cpus': 2, 'memory': '8G', 'gpus': 1}, not 'gpus=1'",
        ),
        ("unknown", "titan_resources: unknown resources ['vram']; use cpus, memory (or memory_mb) and gpus"),
        ("unknown_templated", "titan_resources: unknown resources ['vram']"),
        ("gpus", "titan_resources: resources.gpus must be a whole number of GPUs from 0 to 1024, not 'two'"),
        ("fraction_of_a_gpu", "titan_resources: resources.gpus must be a whole number of GPUs"),
        ("memory", "titan_resources: resources.memory must be a size such as 512M, 8G or 1.5T"),
        ("cpus", "titan_resources: resources.cpus must be between 0 and 1,000,000, not -1"),
        ("both_memories", "titan_resources: give resources.memory or resources.memory_mb, not both"),
        ("memory_mb", "titan_resources: resources.memory_mb must be a whole number of megabytes"),
    ],
)
def test_bad_resources_fail_when_the_dag_is_parsed_naming_the_task(
    seen: dict[str, Any], case: str, expected: str
) -> None:
    assert seen["bad"][case].startswith(f"TitanConfigError: task t: {expected}"), seen["bad"][case]


def test_the_argument_is_templated_and_a_dag_using_it_serialises(seen: dict[str, Any]) -> None:
    # Airflow refuses to serialise an operator that templates BaseOperator's own `resources`.
    assert "titan_resources" in seen["template_fields"] and "resources" not in seen["template_fields"]
    assert seen["serialised"] == {"t": {"gpus": "{{ params.gpus }}"}, "m": {"gpus": 1}}


def test_airflows_own_resources_argument_is_refused_pointing_to_titan_resources(seen: dict[str, Any]) -> None:
    """A job meant to get a GPU must not run silently without one: `resources=` is BaseOperator's."""
    assert seen["airflow_resources"] == (
        "TitanConfigError: task t: resources= is Airflow's own BaseOperator argument, which Titan "
        "never sees; ask Titan with titan_resources={'cpus': 2, 'memory': '8G', 'gpus': 1}"
    )
    assert seen["default_args_resources"] is None  # a DAG's default_args stay Airflow's business
