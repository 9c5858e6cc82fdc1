"""Sequential submit-to-result of a `/bin/true` command job against spawning `/bin/true` directly.
Target: overhead <= 5 ms per job.

Three more rows explain where the overhead goes: the same jobs with commits that skip the fsync
(`master --no-fsync`) and with the in-memory store (no commit to disk), and one bare gRPC round trip to the same master (a `list_workers` call), since a job
costs two client calls, two messages each way on the worker's stream and two durable commits."""

from __future__ import annotations

import subprocess

from _common import Timer, cluster, median, table

from titan_runtime import TitanJob

N = 200


def per_job(store: str, master_args: tuple[str, ...] = ()) -> tuple[list[float], list[float]]:
    """(seconds per job submitted and awaited, seconds per bare round trip) on a fresh cluster."""
    with cluster([("w1", 2)], store=store, master_args=master_args) as c:
        client = c.client
        for _ in range(20):  # warm up connections
            client.wait(client.submit_job(TitanJob(command=["/bin/true"])))
        jobs = []
        for _ in range(N):
            with Timer() as t:
                assert client.wait(client.submit_job(TitanJob(command=["/bin/true"]))).state == "SUCCEEDED"
            jobs.append(t.seconds)
        trips = []
        for _ in range(N):
            with Timer() as t:
                client.list_workers()
            trips.append(t.seconds)
    return jobs, trips


def main() -> None:
    direct = []
    for _ in range(N):
        with Timer() as t:
            subprocess.run(["/bin/true"], check=True)
        direct.append(t.seconds)
    titan, trips = per_job("sqlite")
    no_fsync, _ = per_job("sqlite", ("--no-fsync",))
    in_memory, _ = per_job("memory")
    base = median(direct)

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.2f}"

    table(
        f"/bin/true submitted and awaited {N} times in sequence (median per job; baseline: spawning it directly)",
        [
            ("ms per job", ms(median(titan)), ms(base), f"{median(titan) / base:.1f}", ""),
            ("overhead ms", ms(median(titan) - base), "0", "", "<= 5 ms"),
            ("overhead ms, --no-fsync", ms(median(no_fsync) - base), "0", "", ""),
            ("overhead ms, --store memory", ms(median(in_memory) - base), "0", "", ""),
            ("one gRPC round trip ms", ms(median(trips)), "", "", ""),
        ],
    )


if __name__ == "__main__":
    main()
