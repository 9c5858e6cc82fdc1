"""A webhook pool: the master POSTs signed scale-up/scale-down requests to an HTTP server (here, in the
test process on 127.0.0.1) that starts a worker with the one-time join token it was given."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.helpers import PYTHON, HandWrittenWorker, hand_written_worker, wait_until, webhook_cluster_file
from titan_runtime import TitanJob, certs
from titan_runtime.client.errors import TitanError
from titan_runtime.client.sync import TitanClient
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.providers.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Deliveries,
    sign,
    verify,
)
from titan_runtime.tls import ClientTls

pytestmark = pytest.mark.integration

SECRET = "a-long-random-webhook-secret-for-tests"


class CloudStandIn:
    """What a user's cloud glue does: check the signature, start a worker with the join token."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[dict[str, Any]] = []
        self.rejected = 0
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.fail_next = 0  # answer this many requests with HTTP 503 first (retries)
        self.start_workers = True  # False: only note the request (a test connects with its token)
        self.deliveries = Deliveries()
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = [
                    self.headers.get(h, "") for h in (SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_HEADER)
                ]
                if not verify(SECRET.encode(), body, *headers):
                    stand_in.rejected += 1
                    self._answer(401, {"error": "bad signature"})
                    return
                if stand_in.fail_next:
                    stand_in.fail_next -= 1
                    self._answer(503, {"error": "try again"})
                    return
                if not stand_in.deliveries.first_time(headers[2]):
                    self._answer(200, {"duplicate": True})
                    return
                payload = json.loads(body)
                stand_in.requests.append(payload)
                if payload["event"] == "scale_up":
                    instance = stand_in.start(payload) if stand_in.start_workers else "vm-none"
                    self._answer(200, {"instance": instance})
                else:
                    self._answer(200, {})

            def _answer(self, code: int, data: dict[str, Any]) -> None:
                text = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/titan"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def start(self, payload: dict[str, Any], name: str = "") -> str:
        name = name or payload["launch_id"]
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115
        env = dict(os.environ, TITAN_TOKEN=payload["join_token"])
        argv = [PYTHON, "-m", "titan_runtime", *payload["worker_args"], "--work-dir", str(self.root / name)]
        if name != payload["launch_id"]:
            argv[argv.index("--name") + 1] = name
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self.procs[name] = proc
        return f"vm-{proc.pid}"

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[CloudStandIn]:
    root = tmp_path / "cloud"
    root.mkdir()
    stand_in = CloudStandIn(root)
    try:
        yield stand_in
    finally:
        stand_in.close()


def test_signed_requests_start_a_worker_with_a_join_token_used_once(
    make_cluster, cloud: CloudStandIn, tmp_path: Path
) -> None:
    config = webhook_cluster_file(tmp_path, cloud.url, SECRET, slots=2, idle_timeout=1.5)
    cloud.fail_next = 1  # the first POST is answered 503: the master retries it
    cluster = make_cluster(
        master_args=("--heartbeat-interval", "0.2", "--lease-timeout", "3", "--cluster", str(config))
    )
    client = cluster.client
    job = client.submit_job(
        TitanJob(command=["python3", "-c", "print('hi from the cloud')"], tags=["cloudy"])
    )
    record = client.wait(job, 60)
    assert record.state == "SUCCEEDED", (record.reason, cluster.master_log()[-3000:])

    (up,) = [r for r in cloud.requests if r["event"] == "scale_up"]
    assert up["pool"] == "cloud" and up["tags"] == ["cloudy"] and up["slots"] == 2
    assert up["join_token"].startswith("tjoin1.")
    assert cluster.token not in json.dumps(up)  # the cluster token never leaves the master
    assert cloud.rejected == 0
    worker = next(w for w in client.list_workers() if w.name == up["launch_id"])
    assert (worker.pool, worker.provider, worker.launch_id) == ("cloud", "webhook", up["launch_id"])
    assert record.worker_id == worker.id

    # The join token admits one worker once: a second worker presenting it is refused for good...
    second = cloud.start(up, name="intruder")
    assert second.startswith("vm-")
    assert cloud.procs["intruder"].wait(30) == 2
    assert "already used by worker" in cloud.log("intruder")
    # ... and it opens nothing but the worker link.
    with (
        TitanClient(address=cluster.address, token=up["join_token"]) as joined,
        pytest.raises(TitanError, match="join token"),
    ):
        joined.list_workers()

    # Idle past idle_timeout: drained; it leaves, and the cloud is told to delete the machine.
    wait_until(
        lambda: any(r["event"] == "scale_down" for r in cloud.requests), 30, what="a scale_down request"
    )
    (down,) = [r for r in cloud.requests if r["event"] == "scale_down"]
    assert down["launch_id"] == up["launch_id"] and down["instance"].startswith("vm-")
    assert down["force"] is False and "drained" in down["reason"]
    assert cloud.procs[up["launch_id"]].wait(30) == 0
    # Once the launch is over its token admits nobody, not even a reconnect.
    assert any(e.kind == "left" for e in client.autoscaler_events(pool="cloud"))
    with (
        TitanClient(address=cluster.address, token=up["join_token"]) as joined,
        pytest.raises(TitanError, match="wrong token"),
    ):
        joined.list_workers()


def test_signatures_cover_the_timestamp_the_delivery_and_the_whole_body() -> None:
    key, body, now = SECRET.encode(), b'{"event": "scale_up"}', 1_767_225_000
    header = sign(key, str(now), "d1", body)
    assert header.startswith("sha256=") and verify(key, body, header, str(now), "d1", now=now + 299)
    assert not verify(key, body + b" ", header, str(now), "d1", now=now)
    assert not verify(key, body, header, str(now + 1), "d1", now=now)  # another timestamp
    assert not verify(key, body, header, str(now), "d2", now=now)  # another delivery
    assert not verify(b"another-secret-of-some-length", body, header, str(now), "d1", now=now)
    assert not verify(key, body, header, str(now), "d1", now=now + 301)  # replayed too late
    assert not verify(key, body, header, "soon", "d1", now=now)
    deliveries = Deliveries(window=300)
    assert deliveries.first_time("d1", now) and not deliveries.first_time("d1", now + 500)
    assert deliveries.first_time("d1", now + 601)  # forgotten once verify would refuse it anyway


def test_a_join_token_admits_neither_tags_beyond_its_pool_nor_an_existing_workers_id(
    make_cluster, cloud: CloudStandIn, tmp_path: Path
) -> None:
    config = webhook_cluster_file(tmp_path, cloud.url, SECRET, register_timeout=60)
    cloud.start_workers = False
    cluster = make_cluster(master_args=("--cluster", str(config)))
    cluster.add_worker("gpu-box", tags=("gpu",))
    client = cluster.client
    client.submit_job(TitanJob(command=["true"], tags=["cloudy"]))
    up = wait_until(lambda: next((r for r in cloud.requests if r["event"] == "scale_up"), None), 30)
    token = up["join_token"]

    def refused(worker_id: str, tags: list[str]) -> str:
        with pytest.raises(grpc.RpcError) as caught:
            hand_written_worker(
                cluster.address, token, pb.WorkerHello(worker_id=worker_id, name="x", tags=tags)
            )
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
        return caught.value.details()

    # Tags its pool does not have: it would receive the GPU jobs, and their secrets.
    assert "pool cloud does not grant the tags gpu (it grants: cloudy)" in refused(
        "fresh-1", ["cloudy", "gpu"]
    )
    # An existing worker's id: it would take over that worker's session and its running jobs.
    (gpu_box,) = [w for w in client.list_workers() if w.name == "gpu-box"]
    assert "already registered with the master" in refused(gpu_box.id, ["cloudy"])
    gpu_job = client.submit_job(TitanJob(command=["true"], tags=["gpu"]))
    done = client.wait(gpu_job, 30)
    assert (done.state, done.worker_id) == ("SUCCEEDED", gpu_box.id)
    # What the pool grants, under a new id, is admitted; but where its services are is not its to
    # say: the host is the address the master sees it from, the ports only those the job asked for.
    cluster.stop_worker("gpu-box")
    client.cancel(client.list_runs()[-1].id)  # the first job, so that the service is what it gets
    client.submit_job(TitanJob("svc", command=["true"], job_type="SERVICE", tags=["cloudy"]))
    hello = pb.WorkerHello(worker_id="fresh-2", name="fresh-2", tags=["cloudy"], slots=1)
    with HandWrittenWorker(cluster.address, token, hello) as worker:
        assert worker.welcome.worker_id == "fresh-2"
        job = worker.assignment()
        assert job.job_id == "svc"
        spoofed = pb.AttemptStarted(
            attempt_id=job.attempt_id, pid=4242, host="bank.example.com", ports={"port": 20001, "admin": 22}
        )
        worker.send(pb.WorkerMessage(started=[spoofed]))
        (svc,) = wait_until(lambda: [s for s in client.list_services("svc") if s.host], 30, what="svc's host")
        assert (svc.host, svc.ports) == ("127.0.0.1", {"port": 20001})


RECEIVER = Path(__file__).resolve().parents[2] / "example_pipelines" / "webhook_receiver" / "receiver.py"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[str]:
    """The example receiver, running: its URL."""
    secret = tmp_path / "receiver.secret"
    secret.write_text(SECRET + "\n")
    argv = [PYTHON, str(RECEIVER), "--secret-file", str(secret), "--port", "0"]
    argv += ["--work-root", str(tmp_path / "machines")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("listening on http://127.0.0.1:"), line + proc.stdout.read()  # type: ignore[union-attr]
        yield line.split()[-1] + "hook"
    finally:
        proc.terminate()  # it stops the workers it started, then exits
        assert proc.wait(60) == 0


def post(url: str, body: bytes, timestamp: int, delivery: str, signature: str = "") -> tuple[int, dict]:  # type: ignore[type-arg]
    headers = {
        SIGNATURE_HEADER: signature or sign(SECRET.encode(), str(timestamp), delivery, body),
        TIMESTAMP_HEADER: str(timestamp),
        DELIVERY_HEADER: delivery,
    }
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_the_example_receiver_refuses_forged_stale_and_replayed_requests_and_starts_workers(
    make_cluster, receiver: str, tmp_path: Path
) -> None:
    body = json.dumps(
        {"event": "scale_down", "pool": "p", "launch_id": "nothing-here", "force": False}
    ).encode()
    now = int(time.time())
    assert post(receiver, body, now, "d-1") == (200, {})
    assert post(receiver, body, now + 1, "d-1") == (200, {"duplicate": True})  # a replay, freshly signed
    assert post(receiver, body, now - 1000, "d-2")[0] == 401  # outside the replay window
    assert post(receiver, body, now, "d-3", signature="sha256=" + "0" * 64)[0] == 401
    # And the real thing: the master's requests pass, and the worker it starts joins.
    config = webhook_cluster_file(tmp_path, receiver, SECRET)
    cluster = make_cluster(master_args=("--cluster", str(config)))
    job = cluster.client.submit_job(TitanJob(command=["true"], tags=["cloudy"]))
    record = cluster.client.wait(job, 60)
    assert record.state == "SUCCEEDED", (record.reason, cluster.master_log()[-3000:])
    assert record.worker_name.startswith("cloud-")


def test_a_webhook_launch_for_a_tls_master_carries_its_ca_and_a_certificate_of_its_own(
    make_cluster, receiver: str, tmp_path: Path
) -> None:
    ca = tmp_path / "tls"
    certs.init(ca)
    me = certs.issue(ca, "client", "test")
    config = webhook_cluster_file(tmp_path, receiver, SECRET)
    cluster = make_cluster(
        master_args=("--tls-dir", str(ca), "--require-client-cert", "--cluster", str(config))
    )
    cluster.tls = ClientTls(str(ca / "ca.pem"), *map(str, me))
    job = cluster.client.submit_job(TitanJob(command=["true"], tags=["cloudy"]))
    record = cluster.client.wait(job, 60)
    assert record.state == "SUCCEEDED", (record.reason, cluster.master_log()[-3000:])
    files = tmp_path / "machines" / f"{record.worker_name}-tls"
    assert (files / "ca.pem").read_bytes() == (ca / "ca.pem").read_bytes()
    issued = x509.load_pem_x509_certificate((files / "worker.pem").read_bytes())
    assert issued.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == record.worker_name
    assert (files / "worker-key.pem").stat().st_mode & 0o777 == 0o600
