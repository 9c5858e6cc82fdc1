"""TLS between hosts: a CA made by `certs init`, a master serving TLS (with and without client
certificates), workers and clients dialling it, across a network namespace; and the errors a
user meets when one side speaks TLS and the other does not."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import PYTHON, ProcessCluster
from tests.hosts import NetworkNamespace
from titan_runtime import TitanClient, TitanConnectionError, TitanJob
from titan_runtime.tls import ClientTls

pytestmark = pytest.mark.integration


def certs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "titan_runtime", "certs", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    directory = tmp_path / "tls"
    made = certs("init", "--dir", str(directory))
    assert made.returncode == 0, made.stderr
    return directory


def runs_a_job(cluster: ProcessCluster) -> None:
    job = cluster.client.submit_job(TitanJob(command=["echo", "over TLS"]))
    assert cluster.client.wait(job, 60).state == "SUCCEEDED"
    assert cluster.client.fetch_logs(job) == "over TLS\n"


def test_certs_init_and_issue_make_private_keys_and_refuse_to_replace_a_ca(ca: Path) -> None:
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in ca.iterdir()}
    assert modes == {"ca.pem": 0o644, "ca-key.pem": 0o600, "master.pem": 0o644, "master-key.pem": 0o600}
    assert stat.S_IMODE(ca.stat().st_mode) == 0o700
    again = certs("init", "--dir", str(ca))
    assert again.returncode == 1 and "a new CA would make every certificate it signed useless" in again.stderr
    issued = certs("issue", "client", "alice", "--dir", str(ca))
    assert issued.returncode == 0 and issued.stdout.split() == [
        str(ca / "client-alice.pem"),
        str(ca / "client-alice-key.pem"),
    ]
    assert stat.S_IMODE((ca / "client-alice-key.pem").stat().st_mode) == 0o600
    nowhere = certs("issue", "worker", "w1", "--dir", str(ca.parent / "none"))
    assert nowhere.returncode == 1 and "make one with `titan-runtime certs init`" in nowhere.stderr


def test_a_master_refuses_plaintext_on_a_network_address(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            PYTHON,
            "-m",
            "titan_runtime",
            "master",
            "--bind",
            "0.0.0.0",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "refusing to listen on 0.0.0.0 without TLS" in out.stderr and "--insecure" in out.stderr
    assert not (tmp_path / "master.json").exists()


def test_a_tls_master_serves_tls_clients_and_workers_and_says_what_is_wrong_with_plaintext(
    make_cluster: Callable[..., ProcessCluster], ca: Path
) -> None:
    cluster = make_cluster(master_args=("--tls-dir", str(ca)))
    cluster.tls = ClientTls(str(ca / "ca.pem"))
    cluster.add_worker("w")
    runs_a_job(cluster)
    with (
        TitanClient(cluster.address, token=cluster.token) as plaintext,
        pytest.raises(
            TitanConnectionError, match="closed the connection: if it serves TLS, give its CA with --tls-ca"
        ),
    ):
        plaintext.list_workers()
    cli = cluster.cli("workers", env={**cluster.env(), "TITAN_TLS_CA": ""})
    assert cli.returncode == 1 and "--tls-ca" in cli.stderr
    assert cluster.cli("workers").returncode == 0  # with TITAN_TLS_CA from the cluster's env


def test_a_tls_client_of_a_plaintext_master_is_told_so(cluster: ProcessCluster, ca: Path) -> None:
    with (
        TitanClient(cluster.address, token=cluster.token, tls_ca=str(ca / "ca.pem")) as client,
        pytest.raises(TitanConnectionError, match="does not serve TLS: dial it without --tls-ca"),
    ):
        client.list_workers()


def test_a_master_that_requires_client_certificates_admits_only_those_the_ca_signed(
    make_cluster: Callable[..., ProcessCluster], ca: Path
) -> None:
    worker_cert = certs("issue", "worker", "w", "--dir", str(ca)).stdout.split()
    client_cert = certs("issue", "client", "me", "--dir", str(ca)).stdout.split()
    cluster = make_cluster(master_args=("--tls-dir", str(ca), "--require-client-cert"))
    cluster.tls = ClientTls(str(ca / "ca.pem"), *worker_cert)
    cluster.add_worker("w")
    # A worker certificate binds the worker's name; a client certificate connects no worker.
    impostor = cluster.add_worker("not-w", wait=False)
    assert impostor.wait(30) != 0
    assert "the worker certificate w admits only workers named w" in cluster.worker_log("not-w")
    cluster.tls = ClientTls(str(ca / "ca.pem"), *client_cert)
    as_client = cluster.add_worker("me", wait=False)
    assert as_client.wait(30) != 0
    assert "a client certificate (me) cannot connect a worker" in cluster.worker_log("me")
    del cluster.workers["not-w"], cluster.workers["me"]
    runs_a_job(cluster)
    with (
        TitanClient(cluster.address, token=cluster.token, tls_ca=str(ca / "ca.pem")) as no_cert,
        pytest.raises(TitanConnectionError) as refused,
    ):
        no_cert.list_workers()
    assert "client certificate" in str(refused.value)
    # A certificate of another CA is refused as well.
    other = ca.parent / "other"
    certs("init", "--dir", str(other))
    stranger = certs("issue", "client", "x", "--dir", str(other)).stdout.split()
    with (
        TitanClient(
            cluster.address,
            token=cluster.token,
            tls_ca=str(ca / "ca.pem"),
            tls_cert=stranger[0],
            tls_key=stranger[1],
        ) as client,
        pytest.raises(TitanConnectionError),
    ):
        client.list_workers()


@pytest.mark.parametrize("client_certs", [False, True], ids=["tls", "mutual-tls"])
def test_a_tls_cluster_across_a_network_namespace(
    make_cluster: Callable[..., ProcessCluster], netns: NetworkNamespace, tmp_path: Path, client_certs: bool
) -> None:
    """The master on the host side of a veth pair, serving TLS for that address (no --insecure);
    a worker and a client inside the namespace, as on another machine."""
    ca = tmp_path / "tls"
    assert certs("init", "--dir", str(ca), "--host", netns.host_ip).returncode == 0
    args = (
        "--bind",
        netns.host_ip,
        "--tls-dir",
        str(ca),
        *(("--require-client-cert",) if client_certs else ()),
    )
    cluster = make_cluster(master_args=args)
    assert cluster.address.startswith(netns.host_ip)
    issued = certs("issue", "worker", "remote", "--dir", str(ca)).stdout.split() if client_certs else []
    cluster.tls = ClientTls(str(ca / "ca.pem"), *issued)
    cluster.add_worker("remote", prefix=netns.prefix)
    inside = subprocess.run(
        [*netns.prefix, PYTHON, "-m", "titan_runtime", "submit", "--follow", "--", "echo", "from inside"],
        capture_output=True,
        text=True,
        timeout=60,
        env=cluster.env(),
    )
    assert inside.returncode == 0 and inside.stdout == "from inside\n", inside.stderr
    (worker,) = cluster.client.list_workers()
    assert worker.name == "remote"
