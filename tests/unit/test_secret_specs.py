"""How jobs name secrets: the SDK's two forms, YAML's, and what the master's validation refuses."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from titan_runtime.client.errors import InvalidJob
from titan_runtime.client.job import TitanJob
from titan_runtime.client.pipeline import PipelineError, load_pipeline
from titan_runtime.core.model import InvalidSpec, JobSpec
from titan_runtime.master.convert import spec_from_pb, spec_to_pb


def test_the_sdk_takes_a_list_of_names_or_a_mapping_of_variables_to_names() -> None:
    assert TitanJob(command=["env"], secrets=["DB_PASSWORD"]).secret_env() == {"DB_PASSWORD": "DB_PASSWORD"}
    assert TitanJob(command=["env"], secrets={"PGPASSWORD": "db-password"}).secret_env() == {
        "PGPASSWORD": "db-password"
    }
    with pytest.raises(InvalidJob, match=r"'db-password' is no environment variable name.*MY_VAR"):
        TitanJob(command=["env"], secrets=["db-password"]).secret_env()
    with pytest.raises(InvalidJob, match="a list of names or a mapping"):
        TitanJob(command=["env"], secrets="DB_PASSWORD").secret_env()  # type: ignore[arg-type]


def test_yaml_takes_both_forms_and_says_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            """
            name: s
            jobs:
              - {id: a, command: env, secrets: [API_KEY]}
              - {id: b, command: env, secrets: {PGPASSWORD: db-password}}
            """
        )
    )
    jobs = {job.id: job for job in load_pipeline(path).jobs}
    assert jobs["a"].secret_env() == {"API_KEY": "API_KEY"}
    assert jobs["b"].secret_env() == {"PGPASSWORD": "db-password"}
    path.write_text("name: s\njobs:\n  - {id: a, command: env, secrets: db-password}\n")
    with pytest.raises(PipelineError, match="'secrets' must be a list of secret names or"):
        load_pipeline(path)
    path.write_text("name: s\njobs:\n  - {id: a, command: env, secrets: [db-password]}\n")
    with pytest.raises(PipelineError, match="no environment variable name"):
        load_pipeline(path)


@pytest.mark.parametrize(
    ("secrets", "env", "refusal"),
    [
        ({"1X": "a"}, {}, "cannot go into environment variable '1X'"),
        ({"TITAN_TOKEN": "a"}, {}, "not starting with a digit or TITAN_"),
        ({"X": "-a"}, {}, "invalid secret name '-a'"),
        ({"X": "a/b"}, {}, "invalid secret name"),
        ({"X": "a"}, {"X": "clear"}, "X is given both in env and in secrets"),
        ({f"V{i}": "a" for i in range(65)}, {}, "65 secrets; a job may name at most 64"),
    ],
)
def test_the_master_refuses_secrets_a_job_cannot_have(
    secrets: dict[str, str], env: dict[str, str], refusal: str
) -> None:
    with pytest.raises(InvalidSpec, match=refusal):
        JobSpec(id="j", command=("env",), env=env, secrets=secrets).validate()


def test_a_spec_keeps_its_secret_names_through_the_wire_and_the_store() -> None:
    spec = JobSpec(id="j", command=("env",), secrets={"PGPASSWORD": "db-password"})
    spec.validate()
    assert spec_from_pb(spec_to_pb(spec)) == spec
    assert JobSpec.from_dict(spec.to_dict()).secrets == {"PGPASSWORD": "db-password"}
    assert JobSpec.from_dict(JobSpec(id="k", command=("env",)).to_dict()).secrets == {}
