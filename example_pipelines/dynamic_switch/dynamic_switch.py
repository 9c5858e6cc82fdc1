"""A dynamic switch: a measured load decides, at run time, between a one-job fast scan and a deep
pipeline with two parallel workers. The `measure` job is a branch: its result names the path.

    python example_pipelines/dynamic_switch/dynamic_switch.py --load 0.9   # deep
    python example_pipelines/dynamic_switch/dynamic_switch.py --load 0.1   # fast
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from titan_runtime import TitanClient, TitanJob

STEP = str(Path(__file__).resolve().parent / "step.py")


def build(load: float) -> list[TitanJob]:
    measure = TitanJob("measure", STEP, args="measure", env={"LOAD": str(load)}, branch=True)
    fast = TitanJob("fast_scan", STEP, args="fast")
    deep = TitanJob("deep_prepare", STEP, args="prepare")
    workers = [TitanJob(f"deep_worker_{i}", STEP, args=f"work {i}") for i in (1, 2)]
    merge = TitanJob("deep_merge", STEP, args="merge")
    report = TitanJob("report", STEP, args="report", trigger_rule="none_failed")
    measure >> [fast, deep]
    deep >> workers
    workers >> merge
    [fast, merge] >> report
    return [measure, fast, deep, *workers, merge, report]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--load", type=float, required=True)
    load = parser.parse_args().load
    with TitanClient() as client:
        run = client.submit_dag("dynamic-switch", build(load))
        print(f"submitted run {run}")
        record = run.wait(timeout=120)
        for job in record.jobs:
            print(f"{job.id:14} {job.state:10} {job.reason}")
        print(client.fetch_logs(f"{run}/report"), end="")
        return 0 if record.state == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
