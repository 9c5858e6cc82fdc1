"""Autoscaling: how fast a pending job gets a new worker, and how long an SSH bootstrap takes.

1. Scale from zero: a job submitted to an empty local pool (min 0), from its submission to its
   process running on the worker the autoscaler started (the job's started_at - created_at, both
   from the master). Baseline, same run: the same job pending with no worker, and a worker started
   by hand (a `titan-runtime worker` process) at the moment of submission. Target <= 2 s.
2. SSH bootstrap of a fresh host (no virtualenv yet) with a warm wheel cache: a real sshd in a
   network namespace (needs root and openssh-server), dependencies from a wheelhouse; split into
   connect, install and registration. Baseline, same run: the same install done locally without
   SSH (python -m venv, pip install from the same wheels, start the worker, wait for it). Target <= 20 s.

    python benchmarks/bench_autoscale.py [--rounds 5] [--skip-ssh]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import median, table
from tests.hosts import NetworkNamespace, SshServer
from titan_runtime import TitanJob, certs
from titan_runtime.testing import ProcessCluster, wait_until
from titan_runtime.tls import ClientTls

FAST = ["--heartbeat-interval", "0.2", "--lease-timeout", "3"]


def pending_to_running(client, job_id: str) -> float:  # type: ignore[no-untyped-def]
    record = client.wait(job_id, 60)
    assert record.state == "SUCCEEDED", record.reason
    return record.started_at - record.created_at


def scale_from_zero(rounds: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory(prefix="titan-bench-") as tmp:
        root = Path(tmp)
        config = root / "cluster.yaml"
        config.write_text(
            textwrap.dedent(
                """
                pools:
                  - {name: zero, provider: local, tags: [zero], slots: 1, min: 0, max: 1, idle_timeout: 0.5}
                """
            )
        )  # the default autoscaler interval (0.5 s)
        cluster = ProcessCluster(root, master_args=[*FAST, "--cluster", str(config)])
        titan, baseline = [], []
        try:
            cluster.start_master()
            client = cluster.client
            for n in range(rounds):
                wait_until(
                    lambda: (
                        not any(
                            w.pool == "zero" and w.state not in ("LEFT", "DEAD")
                            for w in client.list_workers()
                        )
                    ),
                    30,
                    what="the pool to be empty",
                )
                job = client.submit_job(TitanJob(command=["true"], tags=["zero"]))
                titan.append(pending_to_running(client, job))
                # Baseline: the job waits; a worker is started by hand right away.
                job = client.submit_job(TitanJob(command=["true"], tags=[f"hand{n}"]))
                cluster.add_worker(f"hand{n}", tags=[f"hand{n}"], slots=1, wait=False)
                baseline.append(pending_to_running(client, job))
                cluster.stop_worker(f"hand{n}")
        finally:
            cluster.stop()
        return titan, baseline


def ssh_bootstrap(rounds: int, tls: bool = False) -> tuple[list[dict[str, float]], list[float]]:
    from titan_runtime.providers.ssh import BootstrapOptions, SshTarget, bootstrap, connect, remote_stop
    from titan_runtime.providers.wheel import build_wheel, build_wheelhouse

    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    runs: list[dict[str, float]] = []
    baseline: list[float] = []
    with tempfile.TemporaryDirectory(prefix="titan-bench-ssh-") as tmp:
        root = Path(tmp)
        wheelhouse = root / "wheelhouse"
        build_wheelhouse(wheelhouse, root / "data" / "wheels")  # and so the wheel cache is warm
        ns = NetworkNamespace()
        server = None
        worker_tls = None
        if tls:  # the master serves TLS: the CA goes to the host with the token
            certs.init(root / "ca", [ns.host_ip])
            worker_tls = ClientTls(str(root / "ca" / "ca.pem"))
        cluster = ProcessCluster(
            root / "c",
            master_args=["--bind", ns.host_ip, *(["--tls-dir", str(root / "ca")] if tls else ["--insecure"])],
        )
        cluster.tls = worker_tls
        (root / "c").mkdir()
        try:
            server = SshServer(ns, root / "sshd")
            cluster.start_master()
            client = cluster.client
            for n in range(rounds):
                remote = root / f"remote{n}"  # fresh: no virtualenv yet
                started = time.monotonic()
                done = bootstrap(
                    BootstrapOptions(
                        target=SshTarget.parse(server.target),
                        master=cluster.address,
                        token=cluster.token,
                        data_dir=root / "data",
                        name=f"ssh{n}",
                        key=str(server.key),
                        python=python,
                        accept_new_host_key=True,
                        wheelhouse=wheelhouse,
                        remote_dir=str(remote),
                        launch_id=f"bench-{n}",
                        tls=worker_tls,
                    )
                )
                mark = time.monotonic()
                wait_until(
                    lambda n=n: any(
                        w.launch_id == f"bench-{n}" and w.state == "ALIVE" for w in client.list_workers()
                    ),
                    120,
                    what="the bootstrapped worker to register",
                )
                total = time.monotonic() - started
                timings = dict(done.timings)
                timings["registration"] = time.monotonic() - mark + timings.pop("start")
                timings["total"] = total
                runs.append(timings)
                ssh = connect(SshTarget.parse(server.target), root / "data", str(server.key))
                try:
                    remote_stop(ssh, str(remote), now=True, timeout=15)
                finally:
                    ssh.close()

                # Baseline: the same steps on this machine, without SSH.
                local = root / f"local{n}"
                local.mkdir()
                wheel = build_wheel(root / "data" / "wheels")
                started = time.monotonic()
                subprocess.run([python, "-m", "venv", str(local / "venv")], check=True)
                pip = [
                    str(local / "venv" / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ]
                subprocess.run([*pip, "--no-index", "--find-links", str(wheelhouse), str(wheel)], check=True)
                env = dict(os.environ, TITAN_TOKEN=cluster.token)
                proc = subprocess.Popen(
                    [
                        str(local / "venv" / "bin" / "titan-runtime"),
                        "worker",
                        "--master",
                        cluster.address,
                        "--name",
                        f"by-hand{n}",
                        "--work-dir",
                        str(local / "work"),
                        *(worker_tls.args() if worker_tls is not None else ()),
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    stdin=subprocess.DEVNULL,
                )
                try:
                    wait_until(
                        lambda n=n: any(
                            w.name == f"by-hand{n}" and w.state == "ALIVE" for w in client.list_workers()
                        ),
                        60,
                        what="the worker installed by hand to register",
                    )
                    baseline.append(time.monotonic() - started)
                finally:
                    proc.send_signal(2)
                    proc.wait(30)
        finally:
            cluster.stop()
            if server is not None:
                server.close()
            ns.close()
    return runs, baseline


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-ssh", action="store_true")
    parser.add_argument("--only-ssh", action="store_true", help="the SSH bootstrap alone")
    parser.add_argument("--tls", action="store_true", help="bootstrap against a master serving TLS")
    args = parser.parse_args()
    if not args.only_ssh:
        report_scale_from_zero(args.rounds)
    if args.skip_ssh:
        return
    why = SshServer.available()
    if why:
        print(f"\nSSH bootstrap: skipped ({why})")
        return
    runs, by_hand = ssh_bootstrap(max(1, min(args.rounds, 3)), args.tls)
    rows = []
    for phase in ("connect", "install", "registration", "total"):
        value = median([r[phase] for r in runs])
        if phase == "total":
            hand = median(by_hand)
            rows.append((f"{phase} (s)", f"{value:.1f}", f"{hand:.1f}", f"{value / hand:.2f}", "<= 20 s"))
        else:
            rows.append((f"{phase} (s)", f"{value:.1f}", "", "", ""))
    table(
        f"SSH bootstrap of a fresh host{' to a TLS master' if args.tls else ''}, warm wheel cache (median of "
        f"{len(runs)}; baseline: same install done locally without SSH)",
        rows,
    )


def report_scale_from_zero(rounds: int) -> None:
    titan, baseline = scale_from_zero(rounds)
    t, b = median(titan), median(baseline)
    table(
        f"Scale from zero: a job pending on an empty local pool until it runs (median of {rounds})",
        [
            ("pending -> running (s)", f"{t:.2f}", f"{b:.2f}", f"{t / b:.2f}", "<= 2 s"),
            (
                "worst (s)",
                f"{max(titan):.2f}",
                f"{max(baseline):.2f}",
                f"{max(titan) / max(baseline):.2f}",
                "",
            ),
        ],
    )


if __name__ == "__main__":
    main()
