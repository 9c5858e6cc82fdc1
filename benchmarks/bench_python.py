"""Warm Python (issue 24): a. Dagster steps; b-e. Python function tasks beside Ray, Dask and a
ProcessPoolExecutor (python_functions.py says what each part measures).

Part a, a Dagster job of 9 trivial ops (8 leaves, one fan-in), then a chain of 30. Ways, in turns
round after round (the order reversed every other round), each the wall time of `execute_job`
against the same instance (the chain: warm, multiprocess and in process only):
- titan_executor, warm (its default): each step asks its worker to preload Dagster, so its
  `python -m dagster api execute_step` is forked from a launcher that has imported Dagster (the
  worker starts that launcher when first asked);
- titan_executor, `warm: false`: the plain launcher forks the step, which imports Dagster itself;
- titan_executor on a worker with `--python-launcher exec`: a new interpreter per step (as before);
- Dagster's multiprocess executor (max_concurrent 2), and in process (the baseline).
Each titan way has a cluster of its own: a master and one worker with 2 slots.

    .venv/bin/python benchmarks/bench_python.py [--rounds 3] [--parts a,b,c,d,e]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from _common import Timer, table

from titan_runtime.testing import ProcessCluster

PARTS = ("a", "b", "c", "d", "e")

#: Each titan way: its worker's arguments and the executor's `warm`.
TITAN_WAYS = {
    "warm": ((), True),
    "warm: false": ((), False),
    "exec'd": (("--python-launcher", "exec"), False),
}


@contextmanager
def titan_cluster(root: Path, args: tuple[str, ...]) -> Iterator[ProcessCluster]:
    root.mkdir(parents=True)
    c = ProcessCluster(root)
    try:
        c.start_master()
        c.add_worker("w", slots=2, args=args)
        yield c
    finally:
        c.stop()


def run_once(instance: Any, way: str, clusters: dict[str, ProcessCluster], shape: str = "fanin") -> float:
    """Seconds `execute_job` takes for the job of `shape` ("fanin": 9 ops; "chain": 30) run `way`."""
    import dagster_fanin
    from dagster import execute_job, reconstructable

    config: dict[str, Any] = {}
    if way in clusters:
        c = clusters[way]
        warm = TITAN_WAYS[way][1]
        config = {
            "execution": {
                "config": {"address": c.address, "token": c.token, "poll_interval": 0.05, "warm": warm}
            }
        }
        target = getattr(dagster_fanin, f"{shape}_titan")
    elif way == "multiprocess":
        config = {"execution": {"config": {"max_concurrent": 2}}}
        target = getattr(dagster_fanin, f"{shape}_multiprocess")
    else:
        target = getattr(dagster_fanin, f"{shape}_in_process")
    with Timer() as t, execute_job(reconstructable(target), instance=instance, run_config=config) as result:
        assert result.success, way
    return t.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parts", default=",".join(PARTS), help="which parts, e.g. b,c (default: all)")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts <= set(PARTS):
        parser.error(f"--parts takes {', '.join(PARTS)}, not {', '.join(sorted(parts - set(PARTS)))}")
    if "a" in parts:
        part_a(args.rounds)
    if parts - {"a"}:
        import python_functions

        python_functions.run(parts, args.rounds)


def part_a(rounds: int) -> None:
    import dagster_fanin
    from dagster import instance_for_test

    ways = [*TITAN_WAYS, "multiprocess", "in process"]
    times: dict[str, list[float]] = {w: [] for w in ways}
    with tempfile.TemporaryDirectory(prefix="titan-bench-python-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        clusters = {
            way: stack.enter_context(
                titan_cluster(root / way.replace(" ", "-").replace("'", "").replace(":", ""), worker_args)
            )
            for way, (worker_args, _) in TITAN_WAYS.items()
        }
        (root / "dagster").mkdir()
        instance = stack.enter_context(instance_for_test(temp_dir=str(root / "dagster")))
        for way in ways:  # the first run of each pays for caches: not counted
            run_once(instance, way, clusters)
        for r in range(rounds):
            for way in ways if r % 2 == 0 else ways[::-1]:
                times[way].append(run_once(instance, way, clusters))
                print(f"round {r + 1} {way:12}: {times[way][-1]:.2f} s", flush=True)
        chain_ways = ["warm", "multiprocess", "in process"]  # the cold ways: a second a step, 30 s a run
        chain: dict[str, list[float]] = {w: [] for w in chain_ways}
        for r in range(rounds):
            for way in chain_ways if r % 2 == 0 else chain_ways[::-1]:
                chain[way].append(run_once(instance, way, clusters, "chain"))
                print(f"round {r + 1} chain {way:12}: {chain[way][-1]:.2f} s", flush=True)
    base = statistics.median(times["in process"])
    multi = statistics.median(times["multiprocess"])
    rows = []
    for way in ways:
        med = statistics.median(times[way])
        target = {
            "warm": f"<= 3x in process; >= 5x faster than multiprocess ({med and multi / med:.1f}x)"
        }.get(way, "")
        rows.append(
            (
                f"9-op job: {way}",
                f"{med:.2f} s ({min(times[way]):.2f}-{max(times[way]):.2f})",
                f"{base:.2f} s",
                f"{med / base:.2f}",
                target,
            )
        )
    table(
        f"a Dagster job of 8 leaves and a fan-in, 2 slots (medians of {rounds} rounds; baseline: in process)",
        rows,
    )
    base = statistics.median(chain["in process"])
    rows = []
    for way in chain_ways:
        med = statistics.median(chain[way])
        rows.append(
            (
                f"30-op chain: {way}",
                f"{med:.2f} s ({min(chain[way]):.2f}-{max(chain[way]):.2f})",
                f"{base:.2f} s",
                f"{(med - base) / dagster_fanin.CHAIN * 1000:.0f} ms",
                "<= 50 ms" if way == "warm" else "",
            )
        )
    table(
        f"a chain of {dagster_fanin.CHAIN} Dagster ops (medians of {rounds} rounds; baseline: in process; "
        "ratio: the overhead per step)",
        rows,
    )


if __name__ == "__main__":
    main()
