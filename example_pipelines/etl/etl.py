"""A 7-job ETL with the SDK: ingest -> three transforms -> aggregate -> validate -> report.

python example_pipelines/etl/etl.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from titan_runtime import TitanClient, TitanJob

STEP = str(Path(__file__).resolve().parent / "step.py")


def build() -> list[TitanJob]:
    ingest = TitanJob("ingest", STEP, args="ingest")
    transforms = [
        TitanJob(f"transform_{name}", STEP, args=f"transform {name}")
        for name in ("clean", "enrich", "dedupe")
    ]
    aggregate = TitanJob("aggregate", STEP, args="aggregate")
    validate = TitanJob("validate", STEP, args="validate", retries=1)
    report = TitanJob("report", STEP, args="report")
    ingest >> transforms
    transforms >> aggregate
    aggregate >> validate >> report
    return [ingest, *transforms, aggregate, validate, report]


def main() -> int:
    with TitanClient() as client:
        run = client.submit_dag("etl", build(), labels={"example": "etl"})
        print(f"submitted run {run}")
        record = run.wait(timeout=300)
        print(client.fetch_logs(f"{run}/report"), end="")
        return 0 if record.state == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
