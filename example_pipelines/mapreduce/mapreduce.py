"""MapReduce with the SDK: generator -> two mappers -> reducer.

Data moves as artifacts through the master, so the jobs can run on workers that share no
filesystem. The reducer's total is twice the sum of the generated numbers.

    python example_pipelines/mapreduce/mapreduce.py      # against TITAN_ADDRESS / 127.0.0.1:9090
"""

from __future__ import annotations

import sys
from pathlib import Path

from titan_runtime import TitanClient, TitanJob

HERE = Path(__file__).resolve().parent


def build() -> list[TitanJob]:
    generate = TitanJob("generate", str(HERE / "generate.py"), args="1000")
    mappers = [TitanJob(f"map_{i}", str(HERE / "mapper.py"), args=f"{i} 2") for i in range(2)]
    reduce = TitanJob("reduce", str(HERE / "reducer.py"))
    generate >> mappers
    mappers >> reduce
    return [generate, *mappers, reduce]


def main() -> int:
    with TitanClient() as client:
        run = client.submit_dag("mapreduce", build())
        print(f"submitted run {run}")
        record = run.wait(timeout=300)
        for job in record.jobs:
            print(f"{job.id:10} {job.state:10} on {job.worker_name}")
        print(client.fetch_logs(f"{run}/reduce"), end="")
        return 0 if record.state == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
