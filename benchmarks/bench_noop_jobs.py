"""200 no-op Python script jobs through one worker with 2 slots, against the same 200 scripts run
by a 2-thread subprocess pool. Target ratio <= 1.15 (the original Titan: ~13 s for 50 such jobs)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import Timer, cluster, table

from titan_runtime import TitanJob

N = 200


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "noop.py"
        script.write_text("pass\n")
        with Timer() as base, ThreadPoolExecutor(2) as pool:
            list(
                pool.map(lambda _: subprocess.run([sys.executable, "-u", str(script)], check=True), range(N))
            )
        with cluster([("w1", 2)]) as c:
            client = c.client
            client.submit_job(TitanJob(filename=str(script)))  # warm: the script is uploaded and cached once
            with Timer() as batch:  # one submission of N independent jobs, one wait
                run = client.submit_dag("noop", [TitanJob(f"j{i}", str(script)) for i in range(N)])
                assert run.wait().state == "SUCCEEDED"
            with Timer() as each:  # one submit call and one wait call per job
                ids = [client.submit_job(TitanJob(filename=str(script))) for _ in range(N)]
                for job_id in ids:
                    assert client.wait(job_id).state == "SUCCEEDED"
    base_s = f"{base.seconds:.2f}"
    table(
        f"{N} no-op Python scripts, 1 worker x 2 slots vs a 2-thread subprocess pool (seconds)",
        [
            (
                "one submit_dag of N jobs",
                f"{batch.seconds:.2f}",
                base_s,
                f"{batch.seconds / base.seconds:.3f}",
                "<= 1.15",
            ),
            (
                "N submit_job + N wait",
                f"{each.seconds:.2f}",
                base_s,
                f"{each.seconds / base.seconds:.3f}",
                "<= 1.15",
            ),
            (
                "jobs/s, one submit_dag",
                f"{N / batch.seconds:.1f}",
                f"{N / base.seconds:.1f}",
                "",
                "original: ~3.8",
            ),
        ],
    )


if __name__ == "__main__":
    main()
