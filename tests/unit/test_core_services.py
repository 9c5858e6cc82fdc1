"""Services in the state machine: health releases dependents, crashes restart, loops fail, stops stay stopped."""

from __future__ import annotations

import pytest

from titan_runtime.core.cluster import ClusterConfig, ClusterState, expand_replicas
from titan_runtime.core.effects import Assign, AttemptExit, CancelAttempt, WorkerHello
from titan_runtime.core.model import JobSpec, JobState, RestartPolicy, RunState


def service(job_id: str, **kw: object) -> JobSpec:
    return JobSpec(id=job_id, kind="service", command=("serve",), **kw)  # type: ignore[arg-type]


def batch(job_id: str, parents: tuple[str, ...] = ()) -> JobSpec:
    return JobSpec(id=job_id, command=("true",), parents=parents)


def assigns(state: ClusterState) -> list[Assign]:
    return [e for e in state.take_effects() if isinstance(e, Assign)]


@pytest.fixture
def state() -> ClusterState:
    s = ClusterState(ClusterConfig(lease_timeout=1e9), jitter=lambda: 0.0)
    s.worker_connected(WorkerHello(worker_id="w", name="w", slots=4), 0)
    return s


def start(state: ClusterState, a: Assign, port: int = 20001) -> None:
    state.attempt_started("w", a.attempt_id, 100, 1.0, 1.0, "127.0.0.1", {"port": port})


def test_dependents_start_when_the_service_is_healthy_and_learn_its_address(state: ClusterState) -> None:
    state.submit_run("r", "", [service("api"), batch("client", ("api",))], 0)
    (api,) = assigns(state)
    start(state, api)
    assert state.resolve("r/api").state is JobState.STARTING
    assert assigns(state) == []
    state.attempt_healthy("w", api.attempt_id, 2)
    (client,) = assigns(state)
    assert client.job_id == "client"
    assert client.env == {"TITAN_SERVICE_API_ADDR": "127.0.0.1:20001"}
    state.attempt_finished("w", client.attempt_id, AttemptExit("succeeded", 0), 3)
    run = state.run("r")
    assert run.state is RunState.RUNNING and run.settled  # only the service keeps it running
    assert state.stop_service("api", 4) == ["r/api"]
    assert CancelAttempt("w", api.attempt_id, "stopped by user") in state.take_effects()
    assert run.state is RunState.SUCCEEDED
    state.attempt_finished("w", api.attempt_id, AttemptExit("cancelled", None, "SIGTERM"), 5)
    assert assigns(state) == [] and state.resolve("r/api").state is JobState.STOPPED


def test_crashes_restart_with_backoff_until_a_crash_loop_fails_it(state: ClusterState) -> None:
    policy = RestartPolicy(attempts=2, window=100, backoff_initial=1.0)
    state.submit_run("r", "", [service("api", restart=policy), batch("after", ("api",))], 0)
    now = 0.0
    for crash in (1, 2):
        (a,) = assigns(state)
        start(state, a)
        now += 1
        state.attempt_finished("w", a.attempt_id, AttemptExit("failed", 1), now)
        job = state.resolve("r/api")
        assert job.state is JobState.RESTARTING and job.restarts == crash
        assert job.not_before == pytest.approx(now + 0.5 * 2 ** (crash - 1))  # jitter 0: half the step
        state.tick(job.not_before)
    (a,) = assigns(state)
    state.attempt_finished("w", a.attempt_id, AttemptExit("failed", 1), now + 10)
    job = state.resolve("r/api")
    assert job.state is JobState.FAILED and job.reason.startswith("crash loop: 3 crashes within 100s")
    assert state.resolve("r/after").state is JobState.UPSTREAM_FAILED  # it never became healthy


def test_crashes_outside_the_window_do_not_add_up(state: ClusterState) -> None:
    state.submit_run(
        "r", "", [service("api", restart=RestartPolicy(attempts=1, window=10, backoff_initial=0))], 0
    )
    now = 0.0
    for _ in range(5):
        (a,) = assigns(state)
        now += 20  # each crash long after the last
        state.attempt_finished("w", a.attempt_id, AttemptExit("failed", 1), now)
        state.tick(now)
    assert state.resolve("r/api").state is not JobState.FAILED


def test_a_service_that_cannot_start_fails_at_once(state: ClusterState) -> None:
    state.submit_run("r", "", [service("api", port=9000)], 0)
    (a,) = assigns(state)
    state.attempt_finished(
        "w", a.attempt_id, AttemptExit("error", reason="port 9000 is already in use on worker w"), 1
    )
    job = state.resolve("r/api")
    assert job.state is JobState.FAILED and job.reason == "port 9000 is already in use on worker w"
    assert assigns(state) == []


def test_restart_on_request_is_not_a_crash(state: ClusterState) -> None:
    state.submit_run("r", "", [service("api", restart=RestartPolicy(attempts=1))], 0)
    for n in range(3):
        (a,) = assigns(state)
        start(state, a)
        state.restart_service("api", n + 1)
        state.attempt_finished("w", a.attempt_id, AttemptExit("cancelled", None, "SIGTERM"), n + 1.5)
    job = state.resolve("r/api")
    assert job.state is JobState.ASSIGNED and job.restarts == 3 and not job.crashes


def test_redeploy_stops_the_old_deployment_once_the_new_one_is_healthy(state: ClusterState) -> None:
    state.submit_run("r1", "", [service("web")], 0)
    (old,) = assigns(state)
    start(state, old)
    state.attempt_healthy("w", old.attempt_id, 1)
    state.submit_run("r2", "", [service("web", env={"V": "2"})], 2)
    (new,) = assigns(state)
    start(state, new, 20002)
    assert state.resolve("r1/web").state is JobState.HEALTHY  # still serving until the new one is up
    state.attempt_healthy("w", new.attempt_id, 3)
    assert state.resolve("r1/web").state is JobState.STOPPED
    assert CancelAttempt("w", old.attempt_id, "replaced by the deployment in run r2") in state.take_effects()


def test_replicas_expand_and_dependents_wait_for_all_of_them() -> None:
    specs = expand_replicas([service("api", replicas=3), batch("client", ("api",))])
    assert [s.id for s in specs] == ["api.1", "api.2", "api.3", "client"]
    assert {s.service for s in specs[:3]} == {"api"}
    assert specs[3].parents == ("api.1", "api.2", "api.3")


def test_replicas_spread_and_a_lost_instance_is_rescheduled() -> None:
    state = ClusterState(ClusterConfig(lease_timeout=1e9))
    for name in ("a", "b"):
        state.worker_connected(WorkerHello(worker_id=name, name=name, slots=4), 0)
    state.submit_run("r", "", [service("api", replicas=2)], 0)
    placed = assigns(state)
    assert sorted(a.worker_id for a in placed) == ["a", "b"]
    state.worker_disconnected("a", 1, "disconnected")
    (moved,) = assigns(state)
    assert moved.worker_id == "b" and state.resolve(f"r/{moved.job_id}").lost == 0


def test_a_restarted_master_learns_ports_and_health_from_the_worker() -> None:
    from titan_runtime.core.effects import HeldAttempt
    from titan_runtime.store import MemoryStore

    store = MemoryStore()
    state = ClusterState(ClusterConfig(lease_timeout=1e9))
    state.worker_connected(WorkerHello(worker_id="w", name="w", slots=2), 0)
    state.submit_run("r", "", [service("api"), batch("client", ("api",))], 0)
    (api,) = assigns(state)
    store.save(state.take_changes())  # the master dies before the start and the health were committed
    snap = store.load()
    fresh = ClusterState(ClusterConfig(lease_timeout=1e9))
    fresh.restore(snap.runs, snap.jobs, snap.attempts, snap.workers, 5)
    held = HeldAttempt(
        api.attempt_id, pid=7, started_at=1, host="10.0.0.2", ports={"port": 20005}, healthy=True
    )
    fresh.worker_connected(WorkerHello(worker_id="w", name="w", slots=2, held=(held,)), 6)
    assert fresh.resolve("r/api").state is JobState.HEALTHY
    (client,) = assigns(fresh)
    assert client.env == {"TITAN_SERVICE_API_ADDR": "10.0.0.2:20005"}
