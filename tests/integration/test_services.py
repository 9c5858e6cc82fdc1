"""Services: discovery, health, restarts, crash loops, fixed ports, redeploys, replicas, restarts of the master."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import textwrap
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ProcessCluster, pid_alive, wait_until
from titan_runtime import Conflict, TitanJob

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "example_pipelines"
API = str(EXAMPLES / "services" / "api.py")


def get(endpoint: str, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://{endpoint}{path}", timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(cluster: ProcessCluster, service: str, count: int = 1) -> list:  # type: ignore[type-arg]
    return wait_until(
        lambda: (lambda found: found if len(found) >= count else None)(
            [s for s in cluster.client.list_services(service) if s.state == "HEALTHY"]
        ),
        30,
        what=f"{count} healthy instance(s) of {service}",
    )


def test_a_job_calls_the_service_through_its_discovered_endpoint(cluster: ProcessCluster) -> None:
    out = cluster.cli("run", "--wait", str(EXAMPLES / "services" / "services.yaml"), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "services keep running (api)" in out.stderr
    run_id = out.stdout.splitlines()[0]
    client = cluster.client
    answer = client.get_result(f"{run_id}/call_api")
    assert answer["hello"] == "from the api"
    endpoint = client.service_endpoint("api")
    assert endpoint.startswith("127.0.0.1:") and 20000 <= int(endpoint.split(":")[1]) <= 32000
    assert f"called http://{endpoint}/hello" in client.fetch_logs(f"{run_id}/call_api")
    assert get(endpoint, "/hello")[0] == 200
    services = json.loads(cluster.cli("services", "--json").stdout)
    assert [s["id"] for s in services] == ["api"]
    for key in ("id", "run_id", "worker_id", "host", "port", "endpoint", "state", "restarts", "started_at"):
        assert key in services[0]
    assert services[0]["state"] == "HEALTHY" and services[0]["endpoint"] == endpoint
    record = client.get_run(run_id)
    assert record.state == "RUNNING" and record.settled
    pid = client.get_job(f"{run_id}/api").attempts[-1].pid
    assert cluster.cli("service", "stop", "api").stdout.strip() == f"stopped {run_id}/api"
    assert client.wait_run(run_id, 30).state == "SUCCEEDED"  # its services were stopped on purpose
    wait_until(lambda: not pid_alive(pid), what="the service process to stop")
    job = client.get_job(f"{run_id}/api")
    assert job.state == "STOPPED" and len(job.attempts) == 1  # exactly one start, no restart
    with pytest.raises(Conflict, match="has no healthy instance"):
        client.service_endpoint("api")


def test_crash_restarts_and_counts_and_a_crash_loop_fails(cluster: ProcessCluster, tmp_path: Path) -> None:
    flag = tmp_path / "crash"
    script = tmp_path / "fragile.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, socket, time
            s = socket.socket(); s.bind(("0.0.0.0", int(os.environ["PORT"]))); s.listen()
            while not os.path.exists({str(flag)!r}):
                time.sleep(0.02)
            os.remove({str(flag)!r})
            raise SystemExit(3)
            """
        )
    )
    client = cluster.client
    client.submit_job(
        TitanJob(
            "fragile",
            str(script),
            job_type="SERVICE",
            restart={"attempts": 3, "window": 60, "backoff_initial": 0.05},
        )
    )
    first = healthy(cluster, "fragile")[0]
    flag.touch()
    wait_until(
        lambda: (lambda s: s[0].restarts == 1 and s[0].state == "HEALTHY")(client.list_services("fragile")),
        30,
    )
    again = client.list_services("fragile")[0]
    assert again.port != 0 and again.endpoint
    job = client.get_job(f"{first.run_id}/fragile")
    assert [a.state for a in job.attempts] == ["FAILED", "RUNNING"] and job.attempts[0].exit_code == 3

    loop = tmp_path / "loop.py"
    loop.write_text("raise SystemExit('boom')\n")
    run = client.submit_job(
        TitanJob(
            "looping",
            str(loop),
            job_type="SERVICE",
            restart={"attempts": 2, "window": 60, "backoff_initial": 0.01},
        )
    )
    record = client.wait(run, 60)
    assert record.state == "FAILED"
    assert record.reason.startswith("crash loop: 3 crashes within 60s (restart.attempts=2)")
    assert len(record.attempts) == 3


def test_a_taken_fixed_port_fails_at_once_with_a_clear_reason(cluster: ProcessCluster) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        job_id = cluster.client.submit_job(TitanJob("pinned", API, job_type="SERVICE", port=port))
        record = cluster.client.wait(job_id, 30)
    assert record.state == "FAILED"
    assert record.reason == f"port {port} is already in use on worker w1; choose another port"
    assert len(record.attempts) == 1 and record.attempts[0].pid == 0  # never a copy on a busy port


def test_unhealthy_service_is_restarted(cluster: ProcessCluster, tmp_path: Path) -> None:
    flag = tmp_path / "sick"
    cluster.client.submit_job(
        TitanJob(
            "api",
            API,
            job_type="SERVICE",
            env={"UNHEALTHY_FLAG": str(flag)},
            health={"http": "/healthz", "interval": 0.1, "failures": 2},
        )
    )
    first = healthy(cluster, "api")[0]
    flag.touch()
    wait_until(lambda: cluster.client.list_services("api")[0].restarts == 1, 30, what="a restart")
    flag.unlink()
    second = healthy(cluster, "api")[0]
    job = cluster.client.get_job(f"{first.run_id}/api")
    assert job.attempts[0].state == "FAILED" and "health check failed 2 times" in job.attempts[0].reason
    assert get(second.endpoint, "/healthz")[0] == 200


def test_redeploy_moves_the_endpoint_after_the_new_one_is_healthy(cluster: ProcessCluster) -> None:
    client = cluster.client
    client.submit_job(TitanJob("web", API, job_type="SERVICE", env={"API_VERSION": "v1"}))
    old = healthy(cluster, "web")[0]
    assert get(old.endpoint, "/hello")[1]["version"] == "v1"
    client.submit_job(TitanJob("web", API, job_type="SERVICE", env={"API_VERSION": "v2"}))
    wait_until(lambda: [s.run_id for s in client.list_services("web")] != [old.run_id, old.run_id], what="v2")
    wait_until(
        lambda: len(client.list_services("web")) == 1 and client.list_services("web")[0].run_id != old.run_id,
        30,
    )
    new_endpoint = client.service_endpoint("web")
    assert get(new_endpoint, "/hello")[1]["version"] == "v2"
    retired = client.get_job(f"{old.run_id}/web")
    assert retired.state == "STOPPED" and retired.reason.startswith("replaced by the deployment in run")


def test_replicas_spread_over_workers(make_cluster) -> None:
    c = make_cluster()
    c.add_worker("a", slots=2)
    c.add_worker("b", slots=2)
    c.client.submit_job(TitanJob("api", API, job_type="SERVICE", replicas=2))
    instances = healthy(c, "api", 2)
    assert sorted(s.id for s in instances) == ["api.1", "api.2"]
    assert {s.worker_name for s in instances} == {"a", "b"}
    endpoints = c.client.service_endpoint("api", all=True)
    assert sorted(endpoints) == sorted(s.endpoint for s in instances)
    assert {get(e, "/hello")[1]["worker"] for e in endpoints} == {"a", "b"}


def test_services_survive_a_master_restart_and_move_when_their_worker_dies(make_cluster) -> None:
    c = make_cluster()
    c.add_worker("first", slots=1)
    c.client.submit_job(TitanJob("api", API, job_type="SERVICE"))
    before = healthy(c, "api")[0]
    pid = c.client.get_job(f"{before.run_id}/api").attempts[-1].pid
    c.kill_master(signal.SIGKILL)
    c.start_master()
    c._client = None
    wait_until(
        lambda: c.client.list_services("api")[0].state == "HEALTHY", 30, what="the service to be adopted"
    )
    adopted = c.client.list_services("api")[0]
    assert (adopted.endpoint, c.client.get_job(f"{before.run_id}/api").attempts[-1].pid) == (
        before.endpoint,
        pid,
    )
    c.add_worker("second", slots=1)
    c.workers.pop("first").kill()
    wait_until(
        lambda: (lambda s: s.state == "HEALTHY" and s.worker_name == "second")(
            c.client.list_services("api")[0]
        ),
        30,
    )
    moved = c.client.list_services("api")[0]
    assert c.client.service_endpoint("api") == moved.endpoint
    assert get(moved.endpoint, "/hello")[1]["worker"] == "second"
    wait_until(lambda: not pid_alive(pid), what="the old instance to die with its worker")


def test_original_format_pipeline_with_a_fixed_port_service(make_cluster, tmp_path: Path) -> None:
    c = make_cluster()
    c.add_worker("w1", slots=2)
    c.add_worker("w2", slots=2)
    project = tmp_path / "original_service"
    shutil.copytree(EXAMPLES / "original_service", project)
    port = free_port()
    pipeline = project / "pipeline.yaml"
    pipeline.write_text(pipeline.read_text().replace("port: 9000", f"port: {port}"))
    out = c.cli("run", "--wait", str(pipeline), timeout=120)
    assert out.returncode == 0, out.stderr
    run = c.client.get_run(out.stdout.splitlines()[0])
    jobs = {j.id: j for j in run.jobs}
    assert jobs["fetch"].started_at - jobs["init"].ended_at >= 2.0
    assert jobs["process"].worker_id == jobs["fetch"].worker_id
    assert c.client.service_endpoint("web").endswith(f":{port}")
    assert get(f"127.0.0.1:{port}", "/")[1] == {"squares": [0, 1, 4]}
    c.client.cancel(run.id, wait=True)
    assert c.client.get_run(run.id).state == "CANCELLED"
