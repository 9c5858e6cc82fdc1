"""The wire form of a job spec: what goes out comes back equal, and default policies are not sent."""

from __future__ import annotations

import pytest

from titan_runtime.core.model import ApprovalGate, HealthCheck, JobSpec, RestartPolicy, RetryPolicy
from titan_runtime.master.convert import spec_from_pb, spec_to_pb

SPECS = [
    JobSpec(id="plain", command=("true",)),
    JobSpec(id="svc", kind="service", command=("serve",), service="api"),
    JobSpec(
        id="svc-http",
        kind="service",
        command=("serve",),
        service="api",
        health=HealthCheck(tcp=False, http="/healthz", expect=204, interval=0.5, grace=2.0),
        restart=RestartPolicy(attempts=2, window=30.0),
    ),
    JobSpec(
        id="retried",
        command=("x",),
        tags=frozenset({"GPU"}),
        retries=RetryPolicy(attempts=3, max_lost=1, fallback=(frozenset({"GPU"}), frozenset())),
    ),
    JobSpec(id="gated", command=("x",), approval=ApprovalGate(True, "ship it?", 60.0)),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.id)
def test_a_spec_survives_the_wire(spec: JobSpec) -> None:
    assert spec_from_pb(spec_to_pb(spec)) == spec


def test_default_policies_are_left_off_but_a_service_always_carries_its_health_check() -> None:
    plain = spec_to_pb(SPECS[0])
    for name in ("retries", "health", "restart", "approval"):
        assert not plain.HasField(name), name
    service = spec_to_pb(SPECS[1])
    assert service.HasField("health") and service.health.tcp  # the worker runs the default TCP check
