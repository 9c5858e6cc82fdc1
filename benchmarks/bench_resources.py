"""Placement with quantities against slots only: the layered 10,000-job DAG and 200 no-op Python
scripts, once with jobs that ask for nothing but a slot and once with jobs that ask for CPUs and a
GPU as well (target: <= 5 % slower).

Both ways run on the same cluster and take turns, round after round: two workers with 2 slots, and
2 CPUs and 2 (declared) GPUs each, so the quantities bind exactly where the slots do and the same
number of jobs run at once either way; what differs is the placement work. A third row asks for
memory too: a job with a memory limit is started under that limit (no warm fork), which costs more
than placement; it is shown for what it is, not held to the target."""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from _common import Timer, table

from titan_runtime import TitanClient, TitanJob
from titan_runtime.testing import ProcessCluster

LAYERS, WIDTH = 100, 100
SCRIPTS = 200
ASK = {"cpus": 1, "gpus": 1}
ASK_MEMORY = {"cpus": 1, "gpus": 1, "memory": "256M"}


def layered(resources: dict[str, object] | None) -> list[TitanJob]:
    jobs = []
    for layer in range(LAYERS):
        for i in range(WIDTH):
            parents = [f"l{layer - 1}_{i}", f"l{layer - 1}_{(i + 1) % WIDTH}"] if layer else None
            jobs.append(
                TitanJob(f"l{layer}_{i}", command=["/bin/true"], parents=parents, resources=resources)
            )
    return jobs


def scripts(script: Path, resources: dict[str, object] | None) -> list[TitanJob]:
    return [TitanJob(f"s{i}", str(script), resources=resources) for i in range(SCRIPTS)]


def timed(client: TitanClient, name: str, jobs: list[TitanJob]) -> float:
    with Timer() as t:
        record = client.submit_dag(name, jobs).wait()
    assert record.state == "SUCCEEDED", record.reason
    return t.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-dag", action="store_true", help="Only the 200 scripts (a minute, not ten).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="titan-bench-") as tmp:
        script = Path(tmp) / "noop.py"
        script.write_text("pass\n")
        c = ProcessCluster(Path(tmp))
        try:
            c.start_master()
            for name in ("w1", "w2"):
                c.add_worker(name, slots=2, args=["--cpus", "2", "--gpus", "0,1", "--memory", "4G"])
            client = c.client
            timed(client, "warm", scripts(script, None)[:4])  # the script is uploaded and cached once
            cases: list[tuple[str, str, Callable[[dict[str, object] | None], list[TitanJob]]]] = [
                ("200 scripts", "scripts", lambda r: scripts(script, r))
            ]
            if not args.skip_dag:
                cases.append((f"{LAYERS * WIDTH:,}-job DAG", "dag", layered))
            times: dict[tuple[str, str], list[float]] = {}
            for r in range(args.rounds):
                for label, short, make in cases:
                    ways = [("slots", None), ("quantities", ASK)]
                    if short == "scripts":
                        ways.append(("with memory", ASK_MEMORY))
                    if r % 2:
                        ways.reverse()  # take turns: neither way always runs first
                    for way, resources in ways:
                        seconds = timed(client, f"{short}-{way}-{r}", make(resources))
                        times.setdefault((label, way), []).append(seconds)
        finally:
            c.stop()
    rows = []
    for label, _, _ in cases:
        base = times[label, "slots"]
        for way in ("quantities", "with memory"):
            values = times.get((label, way))
            if not values:
                continue
            ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
            rows.append(
                (
                    f"{label}: asking {'cpus+gpus' if way == 'quantities' else 'cpus+gpus+memory'}",
                    f"{statistics.median(values):.2f}",
                    f"{statistics.median(base):.2f}",
                    f"{ratio:.3f}",
                    "<= 1.05" if way == "quantities" else "(not placement)",
                )
            )
    table(
        f"placement with quantities vs slots only, 2 workers x 2 slots / 2 CPUs / 2 GPUs "
        f"(seconds to completion, median of {args.rounds} rounds; baseline: slots only, same round)",
        rows,
    )


if __name__ == "__main__":
    main()
