"""A job spec survives the store: what `to_dict` leaves out, `from_dict` restores."""

from __future__ import annotations

import json

from titan_runtime.core.model import HealthCheck, JobSpec, RetryPolicy


def roundtrip(spec: JobSpec) -> JobSpec:
    return JobSpec.from_dict(json.loads(json.dumps(spec.to_dict())))


def test_a_spec_at_its_defaults_is_stored_as_its_id_and_command() -> None:
    spec = JobSpec(id="a", command=("true",))
    assert spec.to_dict() == {"id": "a", "command": ["true"]}
    assert roundtrip(spec) == spec


def test_every_kind_of_field_survives_the_round_trip() -> None:
    spec = JobSpec(
        id="svc",
        kind="service",
        command=("python", "-m", "http.server", "{port}"),
        env={"A": "1"},
        tags=frozenset({"GPU", "fast"}),
        priority=7,
        parents=("x", "y"),
        retries=RetryPolicy(attempts=3, fallback=(frozenset({"GPU"}), frozenset())),
        health=HealthCheck(http="/healthz", grace=2.0),
        ports=("http", "metrics"),
        labels={"team": "ml"},
        iteration=2,
    )
    assert roundtrip(spec) == spec


def test_a_field_set_to_its_default_explicitly_reads_back_the_same() -> None:
    spec = JobSpec(id="a", command=("true",), priority=JobSpec(id="b").priority, retries=RetryPolicy())
    assert "retries" not in spec.to_dict()
    assert roundtrip(spec) == spec
