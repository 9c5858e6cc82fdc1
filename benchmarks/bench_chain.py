"""A 50-job chain of /bin/true: overhead per hop beyond the process spawn. Target <= 5 ms per hop
(the original Titan: ~260 ms per hop). Baseline: the same 50 spawns, one after the other."""

from __future__ import annotations

import itertools
import subprocess

from _common import Timer, cluster, table

from titan_runtime import TitanJob

N = 50


def main() -> None:
    with Timer() as base:
        for _ in range(N):
            subprocess.run(["/bin/true"], check=True)
    with cluster([("w1", 2)]) as c:
        client = c.client
        client.wait(client.submit_job(TitanJob(command=["/bin/true"])))  # warm
        jobs = [
            TitanJob(f"j{i}", command=["/bin/true"], parents=[f"j{i - 1}"] if i else None) for i in range(N)
        ]
        with Timer() as titan:
            run = client.submit_dag("chain", jobs)
            record = run.wait()
        assert record.state == "SUCCEEDED"
        ordered = sorted(record.jobs, key=lambda j: int(j.id[1:]))
        hops = [b.started_at - a.ended_at for a, b in itertools.pairwise(ordered)]
    per_hop = (titan.seconds - base.seconds) / N * 1000
    table(
        f"{N}-job chain of /bin/true vs {N} sequential spawns",
        [
            (
                "total seconds",
                f"{titan.seconds:.3f}",
                f"{base.seconds:.3f}",
                f"{titan.seconds / base.seconds:.1f}",
                "",
            ),
            ("overhead ms per hop", f"{per_hop:.2f}", "0", "", "<= 5 ms"),
            (
                "parent end -> child start ms (median)",
                f"{sorted(hops)[len(hops) // 2] * 1000:.2f}",
                "",
                "",
                "original: ~260",
            ),
        ],
    )


if __name__ == "__main__":
    main()
