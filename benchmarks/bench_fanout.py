"""1 -> 200 -> 1 fan-out/fan-in of /bin/true on 2 workers (2 slots each), against the same 202
spawns through a 4-thread subprocess pool (the same parallelism)."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

from _common import Timer, cluster, table

from titan_runtime import TitanJob

WIDTH = 200


def main() -> None:
    with Timer() as base:
        subprocess.run(["/bin/true"], check=True)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: subprocess.run(["/bin/true"], check=True), range(WIDTH)))
        subprocess.run(["/bin/true"], check=True)
    with cluster([("w1", 2), ("w2", 2)]) as c:
        client = c.client
        client.wait(client.submit_job(TitanJob(command=["/bin/true"])))
        head = TitanJob("head", command=["/bin/true"])
        middle = [TitanJob(f"m{i}", command=["/bin/true"]) for i in range(WIDTH)]
        tail = TitanJob("tail", command=["/bin/true"])
        head >> middle
        middle >> tail
        with Timer() as titan:
            record = client.submit_dag("fan", [head, *middle, tail]).wait()
        assert record.state == "SUCCEEDED"
        workers = {j.worker_name for j in record.jobs}
    table(
        f"1 -> {WIDTH} -> 1 of /bin/true on 2 workers x 2 slots vs a 4-thread subprocess pool",
        [
            (
                "total seconds",
                f"{titan.seconds:.3f}",
                f"{base.seconds:.3f}",
                f"{titan.seconds / base.seconds:.1f}",
                "",
            ),
            (
                "ms per job",
                f"{titan.seconds / (WIDTH + 2) * 1000:.2f}",
                f"{base.seconds / (WIDTH + 2) * 1000:.2f}",
                "",
                "",
            ),
            ("workers used", str(len(workers)), "", "", "2"),
        ],
    )


if __name__ == "__main__":
    main()
