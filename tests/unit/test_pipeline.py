"""YAML pipelines are checked whole: every error names the file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from titan_runtime.client.pipeline import PipelineError, load_pipeline

EXAMPLES = Path(__file__).resolve().parents[2] / "example_pipelines"


def pipeline(tmp_path: Path, text: str, files: tuple[str, ...] = ("a.py", "b.py", "c.py")) -> Path:
    for name in files:
        (tmp_path / name).write_text("print('x')\n")
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def errors(path: Path) -> list[str]:
    with pytest.raises(PipelineError) as info:
        load_pipeline(path)
    return info.value.errors


PIPELINES = sorted(p for p in EXAMPLES.glob("*/*.yaml") if "\njobs:" in p.read_text())


@pytest.mark.parametrize("example", PIPELINES, ids=lambda p: p.parent.name)
def test_every_example_pipeline_is_valid(example: Path) -> None:
    assert load_pipeline(example).jobs


def test_original_format_fields(tmp_path: Path) -> None:
    loaded = load_pipeline(
        pipeline(
            tmp_path,
            """
            name: orig
            version: 1
            jobs:
              - id: a
                file: a.py
                priority: 10
                requirement: GPU
                args: "--x 1 --name 'two words'"
              - id: b
                file: b.py
                depends_on: [a]
                delay: 2
                affinity: true
            """,
        )
    )
    a, b = loaded.jobs
    assert loaded.name == "orig"
    assert (a.priority, a.tag_list, a.arg_list) == (10, ["GPU"], ["--x", "1", "--name", "two words"])
    assert (b.parent_ids, b.delay, b.affinity_mode) == (["a"], 2000.0, "hard")


def test_unknown_keys_get_a_did_you_mean_with_the_line(tmp_path: Path) -> None:
    errs = errors(
        pipeline(
            tmp_path,
            """
            name: x
            jobs:
              - id: a
                file: a.py
                depend_on: [b]
              - id: b
                file: b.py
                prioritty: 3
            """,
        )
    )
    assert errs == [
        "p.yaml:5: job 'a': unknown key 'depend_on' (did you mean 'depends_on'?)",
        "p.yaml:8: job 'b': unknown key 'prioritty' (did you mean 'priority'?)",
    ]


def test_missing_file_unknown_dependency_duplicate_and_types(tmp_path: Path) -> None:
    errs = errors(
        pipeline(
            tmp_path,
            """
            jobs:
              - id: a
                file: missing.py
              - id: b
                file: b.py
                depends_on: [c]
                priority: high
              - id: b
                file: c.py
            """,
        )
    )
    assert "p.yaml:3: job 'a': file 'missing.py' does not exist" in errs[0]
    assert "p.yaml:7: job 'b': 'priority' must be an integer, not 'high'" in errs
    assert "p.yaml:8: duplicate job id 'b' (first at line 4)" in errs
    assert "p.yaml:4: job 'b' depends on unknown job 'c'" in errs
    assert len(errs) == 4


def test_cycle_names_the_jobs(tmp_path: Path) -> None:
    errs = errors(
        pipeline(
            tmp_path,
            """
            jobs:
              - {id: a, file: a.py, depends_on: [c]}
              - {id: b, file: b.py, depends_on: [a]}
              - {id: c, file: c.py, depends_on: [b]}
            """,
        )
    )
    assert len(errs) == 1 and "dependency cycle:" in errs[0]
    assert all(name in errs[0] for name in ("a", "b", "c"))


def test_not_yaml_and_not_a_pipeline(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobs: [\n")
    assert errors(bad)[0].startswith("bad.yaml:")
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    assert errors(listy) == ["list.yaml:1: a pipeline is a mapping with a 'jobs' list"]
    empty = pipeline(tmp_path, "name: x\njobs: []\n")
    assert errors(empty) == ["p.yaml:2: 'jobs' must be a non-empty list of jobs"]


def test_new_keys(tmp_path: Path) -> None:
    loaded = load_pipeline(
        pipeline(
            tmp_path,
            """
            jobs:
              - id: a
                command: [python, -c, "print(1)"]
                env: {A: 1, B: two}
                timeout: 30
                retries: {attempts: 3, backoff: {initial: 1, factor: 2, max: 10}}
                labels: {team: data}
                tags: [GPU, ssd]
              - id: b
                command: "echo 'hello world'"
                depends_on: [a]
                affinity: soft
                node: worker-1
                preload: [pandas, email.parser]
            """,
        )
    )
    a, b = loaded.jobs
    assert b.preload == ["pandas", "email.parser"] and a.preload is None
    assert a.command == ["python", "-c", "print(1)"] and a.env == {"A": "1", "B": "two"}
    assert a.retry_policy() == {
        "attempts": 3,
        "backoff_initial": 1.0,
        "backoff_factor": 2.0,
        "backoff_max": 10.0,
    }
    assert b.command == ["echo", "hello world"] and b.affinity_mode == "soft" and b.node == "worker-1"
    wrong = errors(
        pipeline(tmp_path, "jobs:\n  - id: a\n    command: [echo]\n    preload: [pandas, 'not one']\n")
    )
    assert wrong == ["p.yaml:4: job 'a': 'preload' takes package names such as pandas or a.b_c"]


def test_json_schema_matches_the_loader_and_accepts_every_example() -> None:
    import json

    import jsonschema
    import yaml

    from titan_runtime.client.pipeline import JOB_KEYS, ROOT_KEYS
    from titan_runtime.core.resources import RESOURCE_KEYS

    schema = json.loads((EXAMPLES.parent / "docs" / "pipeline.schema.json").read_text())
    assert set(schema["properties"]) == set(ROOT_KEYS)
    assert set(schema["$defs"]["job"]["properties"]) == set(JOB_KEYS)
    assert set(schema["$defs"]["job"]["properties"]["resources"]["properties"]) == set(RESOURCE_KEYS)
    for example in PIPELINES:
        jsonschema.validate(yaml.safe_load(example.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"jobs": [{"id": "a", "file": "a.py", "depend_on": []}]}, schema)
