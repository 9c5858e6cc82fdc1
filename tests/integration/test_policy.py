"""The authorization matrix: every RPC of the proto has a declared policy (master/policy.py), and
every cell of it holds against a live master, for every kind of credential.

Each call carries an empty request (or one aimed at a run, for what a job may do to its own run
only): an admitted call may fail for its content, never with UNAUTHENTICATED or PERMISSION_DENIED;
a refused one fails with exactly that.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.helpers import ProcessCluster, wait_until, webhook_cluster_file
from titan_runtime import TitanClient, TitanJob
from titan_runtime.master.policy import POLICY, Access, Kind
from titan_runtime.proto import titan_pb2 as pb

pytestmark = pytest.mark.integration

AUTH = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
DESCRIPTOR_METHODS = {
    f"/{service.full_name}/{method.name}": method
    for service in pb.DESCRIPTOR.services_by_name.values()
    for method in service.methods
}


def test_every_rpc_has_a_declared_policy() -> None:
    assert set(DESCRIPTOR_METHODS) - set(POLICY) == set(), "RPCs without a policy in master/policy.py"
    assert set(POLICY) - set(DESCRIPTOR_METHODS) == set(), "policies for RPCs the proto does not have"


def call(channel: grpc.Channel, method: str, token: str | None, request: Any = None) -> grpc.StatusCode:
    """The status of one call of `method` (OK if it answered), with `request` or an empty one."""
    descriptor = DESCRIPTOR_METHODS[method]
    request_type = getattr(pb, descriptor.input_type.name)
    response_type = getattr(pb, descriptor.output_type.name)
    request = request if request is not None else request_type()
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    kwargs = {
        "request_serializer": request_type.SerializeToString,
        "response_deserializer": response_type.FromString,
    }
    try:
        if descriptor.client_streaming and descriptor.server_streaming:
            stream = channel.stream_stream(method, **kwargs)(iter([request]), metadata=metadata, timeout=5)
            next(stream, None)
            stream.cancel()
        elif descriptor.client_streaming:
            channel.stream_unary(method, **kwargs)(iter([request]), metadata=metadata, timeout=5)
        elif descriptor.server_streaming:
            stream = channel.unary_stream(method, **kwargs)(request, metadata=metadata, timeout=5)
            next(stream, None)
            stream.cancel()
        else:
            channel.unary_unary(method, **kwargs)(request, metadata=metadata, timeout=5)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def own_and_other(method: str, own: str, other: str) -> tuple[Any, Any]:
    """For what a job may do to its own run only: a request on its own run (refused, if at all,
    for its content) and the same on another run (refused for being another run's)."""
    titan = method.rsplit("/", 1)[-1]
    bad_spec = pb.JobSpec(id="")  # passes the scope check, fails validation after it
    return {
        "Cancel": (pb.CancelRequest(ref=f"{own}/no-such-job"), pb.CancelRequest(ref=other)),
        "AddJobs": (
            pb.AddJobsRequest(run_id=own, jobs=[bad_spec]),
            pb.AddJobsRequest(run_id=other, jobs=[bad_spec]),
        ),
        "AddIteration": (
            pb.AddIterationRequest(run_id=own, after="no-such-job"),
            pb.AddIterationRequest(run_id=other, after="a"),
        ),
        "DecideGate": (pb.GateDecision(ref=f"{own}/held"), pb.GateDecision(ref=f"{other}/a")),
        "StopService": (pb.ServiceRef(id="no-such-service"), pb.ServiceRef(id="svc")),
        "RestartService": (pb.ServiceRef(id="no-such-service"), pb.ServiceRef(id="svc")),
    }[titan]


class Recorder:
    """A webhook receiver that only notes the scale-up requests (and their join tokens)."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if payload.get("event") == "scale_up":
                    recorder.tokens.append(payload["join_token"])
                body = b'{"instance": "none"}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    found = Recorder()
    yield found
    found.close()


def test_every_cell_of_the_policy_holds_against_a_live_master(
    make_cluster: Callable[..., ProcessCluster], recorder: Recorder, tmp_path: Path
) -> None:
    config = webhook_cluster_file(
        tmp_path, recorder.url, "a-webhook-secret-long-enough", register_timeout=120
    )
    # No waits for failed authentications: this test fails on purpose 70 times from one host.
    args = ("--credential-grace", "0", "--auth-delay-max", "0", "--cluster", str(config))
    cluster = make_cluster(master_args=args)
    cluster.add_worker("w", slots=2)
    client = cluster.client

    def credential_of(name: str, hold: bool) -> tuple[str, str]:
        saved, gate = tmp_path / f"{name}.credential", tmp_path / f"{name}.gate"
        wait = f"; while [ ! -e {gate} ]; do sleep 0.05; done" if hold else ""
        job = client.submit_job(
            TitanJob("held", command=["sh", "-c", f'printf %s "$TITAN_TOKEN" > {saved}{wait}'])
        )
        token = wait_until(lambda: saved.exists() and saved.read_text(), 30, what=f"the {name} credential")
        return job.split("/")[0], token

    own, job_token = credential_of("running", hold=True)
    finished, expired = credential_of("finished", hold=False)
    assert client.wait_run(finished, 30).state == "SUCCEEDED"
    other = client.submit_dag(
        "other",
        [
            TitanJob("a", command=["true"], tags=["nowhere"]),
            TitanJob("svc", command=["true"], job_type="SERVICE", tags=["nowhere"]),
        ],
    ).id
    client.submit_job(TitanJob(command=["true"], tags=["cloudy"]))
    join_token = wait_until(lambda: recorder.tokens and recorder.tokens[0], 30, what="a join token")
    named = {
        role: client.create_token(role, name=f"the-{role}")[0]
        for role in ("admin", "submit", "read", "worker")
    }
    with TitanClient(cluster.address, token=named["submit"]) as submitter:  # the submit token's own run
        submitted = submitter.submit_dag(
            "mine",
            [
                TitanJob("held", command=["true"], tags=["nowhere"]),
                TitanJob("a", command=["true"], tags=["nowhere"]),
            ],
        ).id

    credentials: dict[str, tuple[str | None, Kind | None]] = {
        "none": (None, None),
        "wrong": ("not-a-token", None),
        "expired job": (expired, None),
        "cluster": (cluster.token, Kind.CLUSTER),
        "job": (job_token, Kind.JOB),
        "join": (join_token, Kind.JOIN),
        **{role: (token, Kind(role)) for role, token in named.items()},
    }
    wrong: list[str] = []
    with grpc.insecure_channel(cluster.address) as channel:
        for method, policy in sorted(POLICY.items()):
            for name, (token, kind) in credentials.items():
                if kind is None:
                    expected = "UNAUTHENTICATED"
                    got = call(channel, method, token)
                    ok = got is grpc.StatusCode.UNAUTHENTICATED
                else:
                    access = policy.access(kind)
                    expected = access.value
                    if access is Access.READS:
                        got = call(channel, method, token, pb.KvRequest(op="get", key="k"))
                        refused = call(channel, method, token, pb.KvRequest(op="put", key="k", value="v"))
                        ok = got not in AUTH and refused is grpc.StatusCode.PERMISSION_DENIED
                        got = f"{got.name} reading, {refused.name} writing"  # type: ignore[assignment]
                    elif access is Access.OWN_RUN:
                        mine = submitted if kind is Kind.SUBMIT else own
                        on_own, on_other = own_and_other(method, mine, other)
                        got = call(channel, method, token, on_own)
                        refused = call(channel, method, token, on_other)
                        ok = got not in AUTH and refused is grpc.StatusCode.PERMISSION_DENIED
                        got = f"{got.name} on its own run, {refused.name} on another"  # type: ignore[assignment]
                    else:
                        got = call(channel, method, token)
                        ok = (got is grpc.StatusCode.PERMISSION_DENIED) == (access is Access.DENY) and (
                            got is not grpc.StatusCode.UNAUTHENTICATED
                        )
                if not ok:
                    wrong.append(f"{method} as {name}: expected {expected}, got {getattr(got, 'name', got)}")
    assert not wrong, "\n".join(wrong)
    assert client.get_run(own).state == "RUNNING"  # nothing above touched the job's own run
    assert client.get_run(submitted).state == "RUNNING"
    (tmp_path / "running.gate").touch()
    assert client.wait_run(own, 30).state == "SUCCEEDED"


def test_the_cells_that_keep_jobs_and_join_tokens_in_their_place() -> None:
    """The live check above holds the master to the table; this holds the table to the threat model
    (docs/security.md), so that loosening a cell is a visible change here too."""

    def names(kind: Kind, access: Access) -> set[str]:
        return {m.rsplit("/", 1)[-1] for m, p in POLICY.items() if p.access(kind) is access}

    assert names(Kind.JOIN, Access.ALLOW) == {"Connect", "GetArtifact"}
    assert names(Kind.JOIN, Access.OWN_RUN) == set()
    assert names(Kind.JOB, Access.DENY) == {
        "Connect", "DrainWorker", "SaveDag", "DeleteSavedDag", "AddSchedule", "DeleteSchedule", "ListAudit",
        "CreateToken", "ListTokens", "RevokeToken",
        "SetSecret", "ListSecrets", "DeleteSecret", "DeleteRun", "CollectGarbage",
    }  # fmt: skip
    assert names(Kind.JOB, Access.OWN_RUN) == {
        "Cancel", "AddJobs", "AddIteration", "DecideGate", "StopService", "RestartService"
    }  # fmt: skip
    assert names(Kind.CLUSTER, Access.ALLOW) == {m.rsplit("/", 1)[-1] for m in POLICY}
