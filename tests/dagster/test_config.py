"""Names and settings without processes: Titan ids from Dagster identities, op tags, config errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import titan_dagster
from titan_dagster import naming
from titan_dagster.compute_logs import parse_log_key, titan_file_key
from titan_dagster.errors import TitanConfigError
from titan_dagster.executor import settings_from_config
from titan_dagster.placement import Placement, placement_for_step

RUN = "0f8c2a4e-6b1d-4c3e-9a7f-2d5e8b1c4a90"


@pytest.mark.parametrize(
    "step_key", ["train", "fan_out[part_3]", "graph.inner.op", "x" * 300, "..weird step/key", "ünïcode"]
)
def test_step_run_ids_are_valid_titan_ids_and_unique_per_attempt(step_key: str) -> None:
    ids = {naming.step_run_id(RUN, step_key, attempt) for attempt in range(3)}
    assert len(ids) == 3
    for run_id in ids:
        assert naming.TITAN_ID.match(run_id), run_id
    assert naming.step_run_id(RUN, step_key, 1) == naming.step_run_id(RUN, step_key, 1)  # deterministic


def test_step_keys_that_slug_alike_get_different_ids() -> None:
    assert naming.step_run_id(RUN, "op[a]", 0) != naming.step_run_id(RUN, "op_a_", 0)
    assert naming.step_run_id(RUN, "op[a]", 0) != naming.step_run_id(RUN, "op[b]", 0)


def test_other_ids_are_valid_titan_ids() -> None:
    for value in (
        naming.run_worker_run_id(RUN),
        naming.pipes_run_id(RUN, "asset[2024-01-01]", 2, 3),
        naming.group_id(RUN),
    ):
        assert naming.TITAN_ID.match(value), value


def test_log_keys_name_the_titan_job_and_nothing_else_does() -> None:
    key = ["dagster-run", "compute_logs", titan_file_key("dg-run.1", "step", 2, "abcdefgh")]
    ref = parse_log_key(key)
    assert ref is not None and (ref.ref, ref.attempt) == ("dg-run.1/step", 2)
    assert parse_log_key(["dagster-run", "compute_logs", "abcdefgh"]) is None
    assert parse_log_key(["dagster-run", "compute_logs", "titan~only~three"]) is None


def test_op_tags_refine_the_executor_defaults() -> None:
    defaults = Placement(requirement=("dagster",), priority=1, timeout=600)
    tags = {
        "titan/requirement": "gpu, cuda12",
        "titan/priority": "9",
        "titan/timeout": "30",
        "titan/resources": '{"slots": 2}',
    }
    placement = placement_for_step("train", tags, defaults)
    assert placement == Placement(requirement=("dagster", "gpu", "cuda12"), priority=9, timeout=30.0, slots=2)
    assert placement_for_step("other", {}, defaults) == defaults
    assert placement_for_step("s", {"titan/resources": "slots=3"}, defaults).slots == 3
    assert placement_for_step("s", {"titan/requirement": "GENERAL"}, defaults).requirement == ("dagster",)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"titan/priority": "high"}, "priority must be a whole number"),
        ({"titan/timeout": "10m"}, "timeout must be a number of seconds"),
        ({"titan/timeout": "-1"}, "timeout must be a number of seconds"),
        ({"titan/requirement": "gpu card"}, "'gpu card' is not a valid Titan worker tag"),
        ({"titan/resources": '{"tpus": 1}'}, "unknown resource(s) ['tpus']"),
        ({"titan/resources": '{"slots": 0}'}, "slots must be a whole number of at least 1"),
        ({"titan/resources": "{slots: 2"}, "is not valid JSON"),
        ({"titan/resources": "two slots"}, "resources must look like"),
    ],
)
def test_bad_op_tags_say_which_step_tag_and_value(tags: dict[str, str], expected: str) -> None:
    with pytest.raises(TitanConfigError) as caught:
        placement_for_step("train", tags, Placement())
    message = str(caught.value)
    assert message.startswith('step "train", tag titan/'), message
    assert expected in message, message


def test_executor_config_is_checked_with_readable_errors() -> None:
    settings = settings_from_config({"requirement": "dagster", "priority": 3, "env": {"A": 1}, "timeout": 60})
    assert settings.placement == Placement(requirement=("dagster",), priority=3, timeout=60.0)
    assert settings.env == {"A": "1"}
    assert settings.address is None and settings.token is None  # Titan's own resolution applies
    with pytest.raises(TitanConfigError, match="titan_executor config, env: 'A=B' is not a valid"):
        settings_from_config({"env": {"A=B": "x"}})
    with pytest.raises(TitanConfigError, match="health_check_interval must be at least 1"):
        settings_from_config({"health_check_interval": 0})


def test_dagster_internals_are_imported_in_the_compat_module_only() -> None:
    """A new Dagster minor that moves its internals must break titan_dagster/_compat.py alone."""
    package = Path(titan_dagster.__file__).parent
    offenders = [
        f"{path.name}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "_compat.py"
        for line in path.read_text().splitlines()
        if re.match(r"\s*(from|import)\s+dagster\._", line)
    ]
    assert offenders == []
    assert "from dagster._core" in (package / "_compat.py").read_text()
