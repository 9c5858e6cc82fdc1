"""Sequential submit-to-result of a `/bin/true` command job against spawning `/bin/true` directly.
Target: overhead <= 5 ms per job."""

from __future__ import annotations

import subprocess

from _common import Timer, cluster, median, table

from titan_runtime import TitanJob

N = 200


def main() -> None:
    direct = []
    for _ in range(N):
        with Timer() as t:
            subprocess.run(["/bin/true"], check=True)
        direct.append(t.seconds)
    with cluster([("w1", 2)]) as c:
        client = c.client
        for _ in range(20):  # warm up connections
            client.wait(client.submit_job(TitanJob(command=["/bin/true"])))
        titan = []
        for _ in range(N):
            with Timer() as t:
                assert client.wait(client.submit_job(TitanJob(command=["/bin/true"]))).state == "SUCCEEDED"
            titan.append(t.seconds)
    overhead = (median(titan) - median(direct)) * 1000
    table(
        f"/bin/true submitted and awaited {N} times in sequence (median per job)",
        [
            (
                "ms per job",
                f"{median(titan) * 1000:.2f}",
                f"{median(direct) * 1000:.2f}",
                f"{median(titan) / median(direct):.1f}",
                "",
            ),
            ("overhead ms", f"{overhead:.2f}", "0", "", "<= 5 ms"),
        ],
    )


if __name__ == "__main__":
    main()
