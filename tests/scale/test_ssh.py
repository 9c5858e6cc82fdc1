"""SSH bootstrap against a real sshd on a host of its own (a network namespace with its own address).

The namespace has no route to anything but this machine, like a host without package index access:
the dependencies go up from a wheelhouse. Everything runs as root (namespaces need it); the remote
directories are in the test's temp dir, and every process started (sshd, remote workers) is stopped
by its pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import PYTHON, pid_alive, wait_until
from tests.hosts import NetworkNamespace, SshServer
from titan_runtime import TitanJob, certs
from titan_runtime.tls import ClientTls

pytestmark = pytest.mark.integration

WHEELHOUSE_CACHE = Path.home() / ".cache" / "titan-runtime-tests" / "wheelhouse"
#: The "remote" Python: the interpreter this venv was made from, so the wheelhouse (made here) fits it.
REMOTE_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))


@dataclass
class SshHost:
    server: SshServer
    root: Path
    wheelhouse: Path

    @property
    def ns(self) -> NetworkNamespace:
        return self.server.ns

    @property
    def key(self) -> Path:
        return self.server.key

    @property
    def other_key(self) -> Path:
        return self.server.other_key

    @property
    def target(self) -> str:
        return self.server.target

    def remote_dir(self, name: str) -> str:
        return str(self.root / "remote" / name)

    def kill_remote_workers(self) -> None:
        """Stop whatever a test left running on the host, by the pid in its pid file."""
        for pid_file in (self.root / "remote").glob("*/worker.pid"):
            try:
                pid = int(pid_file.read_text().strip())
            except ValueError:
                continue
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                wait_until(lambda pid=pid: not pid_alive(pid), 10, what=f"remote worker {pid} to die")


@pytest.fixture(scope="module")
def ssh_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHost]:
    why = SshServer.available()
    if why:
        pytest.skip(f"SSH tests skipped: {why}")
    root = tmp_path_factory.mktemp("sshhost")
    (root / "remote").mkdir()
    ns = NetworkNamespace()
    host = None
    try:
        server = SshServer(ns, root / "sshd")
        host = SshHost(server, root, Path())
        from titan_runtime.providers.wheel import build_wheelhouse

        WHEELHOUSE_CACHE.mkdir(parents=True, exist_ok=True)
        build_wheelhouse(WHEELHOUSE_CACHE, WHEELHOUSE_CACHE.parent / "wheel-cache")
        host.wheelhouse = WHEELHOUSE_CACHE
        yield host
    finally:
        if host is not None:
            host.kill_remote_workers()
            host.server.close()
        ns.close()


def bootstrap_args(host: SshHost, remote: str, *extra: str) -> list[str]:
    return [
        "ssh",
        "bootstrap",
        host.target,
        "--key",
        str(host.key),
        "--remote-dir",
        host.remote_dir(remote),
        "--python",
        REMOTE_PYTHON,
        *extra,
    ]


def host_args(host: SshHost, remote: str) -> list[str]:
    return ["--key", str(host.key), "--remote-dir", host.remote_dir(remote)]


def test_bootstrap_registers_runs_a_job_and_stop_stops_it(make_cluster, ssh_host: SshHost) -> None:
    cluster = make_cluster(master_args=("--bind", ssh_host.ns.host_ip, "--insecure"))
    done = cluster.cli(
        *bootstrap_args(
            ssh_host,
            "cli",
            "--accept-new-host-key",
            "--wheelhouse",
            str(ssh_host.wheelhouse),
            "--tags",
            "remote",
        ),
        "--name",
        "sshbox",
        "--slots",
        "2",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "worker sshbox on root@" in done.stdout and "registered in" in done.stdout
    for phase in ("connect", "install", "registration"):
        assert phase in done.stdout
    assert cluster.token not in done.stdout + done.stderr  # never printed
    known = (cluster.data_dir / "known_hosts").read_text()
    assert ssh_host.ns.ns_ip in known

    client = cluster.client
    worker = next(w for w in client.list_workers() if w.name == "sshbox")
    assert worker.state == "ALIVE" and worker.provider == "ssh" and worker.tags == ["remote"]
    job = client.submit_job(
        TitanJob(
            command=["python3", "-c", "import socket; print('on', socket.gethostname())"], tags=["remote"]
        )
    )
    record = client.wait(job, 60)
    assert record.state == "SUCCEEDED" and record.worker_id == worker.id
    assert "on " in client.fetch_logs(job)

    remote = Path(ssh_host.remote_dir("cli"))
    token_file = remote / "token"
    assert (token_file.stat().st_mode & 0o777) == 0o600
    assert token_file.read_text().strip() == cluster.token
    pid = int((remote / "worker.pid").read_text())
    assert pid == worker.pid and pid_alive(pid)
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert cluster.token not in cmdline  # the token is in a 0600 file, not on a command line

    status = cluster.cli("ssh", "status", ssh_host.target, *host_args(ssh_host, "cli"))
    assert status.returncode == 0 and f"running (pid {pid})" in status.stdout, status.stderr
    logs = cluster.cli("ssh", "logs", ssh_host.target, *host_args(ssh_host, "cli"))
    assert "connected to master" in logs.stdout

    # Bootstrapping again while it runs is refused with what to do.
    again = cluster.cli(
        *bootstrap_args(ssh_host, "cli", "--wheelhouse", str(ssh_host.wheelhouse)), timeout=120
    )
    assert (
        again.returncode == 1 and "a worker already runs here" in again.stderr and "ssh stop" in again.stderr
    )

    stopped = cluster.cli("ssh", "stop", ssh_host.target, *host_args(ssh_host, "cli"))
    assert stopped.returncode == 0 and f"stopped {pid}" in stopped.stdout, stopped.stderr
    assert not pid_alive(pid)
    wait_until(
        lambda: next(w for w in client.list_workers() if w.name == "sshbox").state == "LEFT",
        what="the stopped worker to have left",
    )
    status = cluster.cli("ssh", "status", ssh_host.target, *host_args(ssh_host, "cli"))
    assert status.returncode == 3 and "not running" in status.stdout


def test_an_ssh_pool_bootstraps_on_demand_and_descales_when_idle(
    make_cluster, ssh_host: SshHost, tmp_path: Path
) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            autoscaler:
              interval: 0.2
            pools:
              - name: remote
                provider: ssh
                hosts: [{ssh_host.target}]
                key: {ssh_host.key}
                python: {REMOTE_PYTHON}
                accept_new_host_key: true
                wheelhouse: {ssh_host.wheelhouse}
                remote_dir: {ssh_host.remote_dir("pool")}
                tags: [far]
                slots: 1
                cpus: 1
                memory: 256M
                gpus: [5]
                max: 1
                idle_timeout: 1.5
            """
        )
    )
    cluster = make_cluster(
        master_args=(
            "--bind",
            ssh_host.ns.host_ip,
            "--insecure",
            "--heartbeat-interval",
            "0.2",
            "--lease-timeout",
            "3",
            "--cluster",
            str(config),
        )
    )
    client = cluster.client
    job = client.submit_job(TitanJob(command=["true"], tags=["far"]))
    record = client.wait(job, 240)
    assert record.state == "SUCCEEDED", (record.reason, cluster.master_log()[-3000:])
    worker = next(w for w in client.list_workers() if w.id == record.worker_id)
    assert (worker.pool, worker.provider) == ("remote", "ssh")
    # It offers what the pool declares (the host's own CPUs, memory and devices do not matter).
    assert (worker.cpu_count, worker.memory_bytes, worker.gpus) == (1, 256 << 20, ["5"])
    pid = worker.pid
    # Idle: drained through the master; the remote process exits by itself, for good.
    wait_until(lambda: not pid_alive(pid), 60, what="the descaled remote worker to exit")
    wait_until(
        lambda: next(w for w in client.list_workers() if w.id == worker.id).state == "LEFT",
        30,
        what="the descaled worker to have left",
    )
    kinds = [e.kind for e in client.autoscaler_events(pool="remote")]
    assert kinds[:2] == ["launch", "registered"] and "drain" in kinds and kinds.count("launch") == 1


def test_tunnel_reaches_a_master_the_host_cannot(make_cluster, ssh_host: SshHost) -> None:
    cluster = make_cluster()  # on 127.0.0.1 of this namespace: the host has no route to it
    argv = [
        PYTHON,
        "-m",
        "titan_runtime",
        *bootstrap_args(
            ssh_host, "tunnel", "--accept-new-host-key", "--wheelhouse", str(ssh_host.wheelhouse)
        ),
        "--tunnel",
        "--name",
        "tunnelled",
        "--tags",
        "behind-nat",
    ]
    log = open(cluster.root / "tunnel.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(argv, env=cluster.env(), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    try:
        wait_until(
            lambda: any(w.name == "tunnelled" and w.state == "ALIVE" for w in cluster.client.list_workers()),
            240,
            what="the tunnelled worker to register: " + (cluster.root / "tunnel.log").read_text()[-2000:],
        )
        job = cluster.client.submit_job(TitanJob(command=["echo", "through the tunnel"], tags=["behind-nat"]))
        assert cluster.client.wait(job, 60).state == "SUCCEEDED"
        assert "through the tunnel" in cluster.client.fetch_logs(job)
        worker = next(w for w in cluster.client.list_workers() if w.name == "tunnelled")
        wait_until(
            lambda: "Keeping it open" in (cluster.root / "tunnel.log").read_text(),
            30,
            what="the CLI to say so",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, (cluster.root / "tunnel.log").read_text()
    assert "stopping the worker" in (cluster.root / "tunnel.log").read_text()
    wait_until(lambda: not pid_alive(worker.pid), 30, what="the tunnelled worker to stop")


# ---------------------------------------------------------------- failures say what to do


def test_unknown_host_key_is_refused_with_its_fingerprint(make_cluster, ssh_host: SshHost) -> None:
    cluster = make_cluster()
    done = cluster.cli(*bootstrap_args(ssh_host, "strict"), timeout=60)
    assert done.returncode == 1
    assert "host key of" in done.stderr and "is not known (ssh-ed25519 SHA256:" in done.stderr
    assert "--accept-new-host-key" in done.stderr
    assert not Path(ssh_host.remote_dir("strict")).exists()  # nothing was done on the host


def test_auth_refused_says_which_key_and_how_to_authorize_it(make_cluster, ssh_host: SshHost) -> None:
    cluster = make_cluster()
    args = bootstrap_args(ssh_host, "auth", "--accept-new-host-key")
    args[args.index(str(ssh_host.key))] = str(ssh_host.other_key)
    done = cluster.cli(*args, timeout=60)
    assert done.returncode == 1
    assert "refused the SSH login of root" in done.stderr and str(ssh_host.other_key) in done.stderr
    assert "authorized_keys" in done.stderr


def test_unreachable_host_says_so(make_cluster, tmp_path: Path) -> None:
    cluster = make_cluster()
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = cluster.cli(
        "ssh", "bootstrap", f"me@127.0.0.1:{port}", "--key", str(tmp_path / "none"), timeout=60
    )
    assert done.returncode == 1
    assert f"cannot reach 127.0.0.1:{port} over SSH" in done.stderr and "sshd runs there" in done.stderr


def test_no_python_on_the_host(make_cluster, ssh_host: SshHost) -> None:
    cluster = make_cluster()
    args = bootstrap_args(ssh_host, "nopython", "--accept-new-host-key")
    args[args.index(REMOTE_PYTHON)] = "/opt/no/python3"
    done = cluster.cli(*args, timeout=60)
    assert done.returncode == 1
    assert "no Python at '/opt/no/python3'" in done.stderr and "--python PATH" in done.stderr


def test_pip_failure_is_reported_verbatim(make_cluster, ssh_host: SshHost, tmp_path: Path) -> None:
    cluster = make_cluster()
    empty = tmp_path / "empty-wheelhouse"
    empty.mkdir()
    done = cluster.cli(
        *bootstrap_args(ssh_host, "pipfail", "--accept-new-host-key", "--wheelhouse", str(empty)), timeout=180
    )
    assert done.returncode == 1
    assert "pip install failed on" in done.stderr
    assert "No matching distribution found" in done.stderr  # pip's own words
    assert "titan-runtime ssh wheelhouse" in done.stderr


def test_a_worker_that_never_registers_is_stopped_and_reported(make_cluster, ssh_host: SshHost) -> None:
    cluster = make_cluster()  # 127.0.0.1 here: unreachable from the host
    done = cluster.cli(
        *bootstrap_args(ssh_host, "noreg", "--accept-new-host-key", "--wheelhouse", str(ssh_host.wheelhouse)),
        "--master-address",
        f"{ssh_host.ns.host_ip}:9",
        "--register-timeout",
        "3",
        timeout=300,
    )
    assert done.returncode == 1
    assert "did not register within 3s, so it was stopped" in done.stderr
    assert "--tunnel" in done.stderr and "unreachable" in done.stderr  # the worker's own log lines
    pid = int((Path(ssh_host.remote_dir("noreg")) / "worker.pid").read_text())
    assert not pid_alive(pid)


def test_target_syntax_errors_are_plain() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "titan_runtime", "ssh", "bootstrap", "no-user-here"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "is not USER@HOST[:PORT]" in done.stderr


def test_an_ssh_pool_carries_tls_and_a_client_certificate_to_its_host(
    make_cluster, ssh_host: SshHost, tmp_path: Path
) -> None:
    ca = tmp_path / "tls"
    certs.init(ca, [ssh_host.ns.host_ip])
    me = certs.issue(ca, "client", "test")
    config = tmp_path / "cluster.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            autoscaler:
              interval: 0.2
            pools:
              - name: remote
                provider: ssh
                hosts: [{ssh_host.target}]
                key: {ssh_host.key}
                python: {REMOTE_PYTHON}
                accept_new_host_key: true
                wheelhouse: {ssh_host.wheelhouse}
                remote_dir: {ssh_host.remote_dir("tls")}
                tags: [far]
                max: 1
            """
        )
    )
    args = (
        "--bind",
        ssh_host.ns.host_ip,
        "--tls-dir",
        str(ca),
        "--require-client-cert",
        "--cluster",
        str(config),
    )
    cluster = make_cluster(master_args=args)
    cluster.tls = ClientTls(str(ca / "ca.pem"), *map(str, me))
    job = cluster.client.submit_job(TitanJob(command=["true"], tags=["far"]))
    record = cluster.client.wait(job, 240)
    assert record.state == "SUCCEEDED", (record.reason, cluster.master_log()[-3000:])
    remote = Path(ssh_host.remote_dir("tls")) / "tls"
    modes = {p.name: p.stat().st_mode & 0o777 for p in remote.iterdir()}
    assert modes == {"ca.pem": 0o644, "worker.pem": 0o644, "worker-key.pem": 0o600}
    assert (remote / "ca.pem").read_bytes() == (ca / "ca.pem").read_bytes()
    assert "ca-key" not in " ".join(modes)  # the CA's key never leaves the master's host
