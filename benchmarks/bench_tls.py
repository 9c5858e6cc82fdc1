"""TLS and mutual TLS against plaintext, in the same run: sequential submit-to-result of a
`/bin/true` job, and 200 such jobs submitted as one run and awaited. Target: at most 10 % slower.

Three clusters run side by side (a master and one worker with 2 slots each: plaintext, TLS, TLS
with client certificates) and the measurements take turns, one of each mode after the other, so
that the VM's drift falls on all of them alike.

    .venv/bin/python benchmarks/bench_tls.py [--rounds 3] [--sequential 150]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from _common import Timer, median, table

from titan_runtime import TitanClient, TitanJob, certs
from titan_runtime.testing import ProcessCluster
from titan_runtime.tls import ClientTls

MODES = ("plaintext", "tls", "mutual tls")
BATCH = 200


@contextlib.contextmanager
def clusters(root: Path) -> Iterator[dict[str, ProcessCluster]]:
    ca = root / "ca"
    certs.init(ca)
    worker = certs.issue(ca, "worker", "w1")  # a worker certificate binds the name of the worker
    client = certs.issue(ca, "client", "bench")
    setups = {
        "plaintext": ((), None, None),
        "tls": (("--tls-dir", str(ca)), ClientTls(str(ca / "ca.pem")), None),
        "mutual tls": (
            ("--tls-dir", str(ca), "--require-client-cert"),
            ClientTls(str(ca / "ca.pem"), *map(str, worker)),
            ClientTls(str(ca / "ca.pem"), *map(str, client)),
        ),
    }
    started: dict[str, ProcessCluster] = {}
    try:
        for mode, (args, worker_tls, client_tls) in setups.items():
            c = started[mode] = ProcessCluster(root / mode.replace(" ", "-"), master_args=args)
            c.root.mkdir()
            c.start_master()
            c.tls = worker_tls
            c.add_worker("w1", slots=2)
            c.tls = client_tls or worker_tls
        yield started
    finally:
        for c in started.values():
            c.stop()


def one_job(client: TitanClient) -> None:
    assert client.wait(client.submit_job(TitanJob(command=["/bin/true"]))).state == "SUCCEEDED"


def batch(client: TitanClient, r: int) -> None:
    jobs = [TitanJob(f"j{i}", command=["/bin/true"]) for i in range(BATCH)]
    assert client.submit_dag(f"batch-{r}", jobs).wait().state == "SUCCEEDED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of the 200-job batch per mode")
    parser.add_argument("--sequential", type=int, default=150, help="sequential jobs per mode")
    args = parser.parse_args()
    latency: dict[str, list[float]] = {m: [] for m in MODES}
    batches: dict[str, list[float]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="titan-bench-tls-") as tmp, clusters(Path(tmp)) as running:
        clients = {mode: c.client for mode, c in running.items()}
        for _ in range(10):  # connections, caches
            for client in clients.values():
                one_job(client)
        for i in range(args.sequential):
            for mode in MODES[i % 3 :] + MODES[: i % 3]:  # no fixed order
                with Timer() as t:
                    one_job(clients[mode])
                latency[mode].append(t.seconds)
        for r in range(args.rounds):
            for mode in MODES[r % 3 :] + MODES[: r % 3]:
                with Timer() as t:
                    batch(clients[mode], r)
                batches[mode].append(t.seconds)
    plain_latency, plain_batch = median(latency["plaintext"]), median(batches["plaintext"])
    rows = []
    for mode in MODES[1:]:
        lat, bat = median(latency[mode]), median(batches[mode])
        rows.append(
            (
                f"{mode}: ms per sequential job",
                f"{lat * 1000:.2f}",
                f"{plain_latency * 1000:.2f}",
                f"{lat / plain_latency:.3f}",
                "<= 1.10",
            )
        )
        rows.append(
            (
                f"{mode}: s for {BATCH} jobs",
                f"{bat:.2f}",
                f"{plain_batch:.2f}",
                f"{bat / plain_batch:.3f}",
                "<= 1.10",
            )
        )
    runs = " / ".join(" ".join(f"{x:.2f}" for x in batches[m]) for m in MODES)
    rows.append(("  batch runs, plaintext / tls / mutual", runs, "", "", ""))
    table(
        f"TLS against plaintext (medians; {args.sequential} sequential jobs and {args.rounds} batches per mode, "
        "modes in turn; baseline: plaintext)",
        rows,
    )


if __name__ == "__main__":
    main()
