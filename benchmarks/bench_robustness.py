"""Robustness at scale (issue 18).

- A 100,000-job chain whose root fails: every descendant UPSTREAM_FAILED. Target <= 1 s, from the
  root's end to the client seeing the run FAILED. Baseline: accepting the same chain.
- A master kill -9 and restart with 100,000 jobs stored, to dispatching again. Target <= 2 s.
  Baseline: the same on an empty store.
- The budgeted condition evaluator against the one before it (BASELINE_REV), on a 10,000-job DAG
  whose every job has a condition on its parents' results: in-process evaluation of all of them,
  and the whole DAG on a real cluster, each version in turn. Target <= 10 % slower.

    .venv/bin/python benchmarks/bench_robustness.py [--rounds 3] [--baseline-rev f06ba7f]
                                                    [--parts chain,restart,conditions]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from _common import Timer, cluster, table
from bench_recovery import master_restart

from titan_runtime import TitanJob
from titan_runtime.core import expr

#: The last commit before the budgeted evaluator, and before this issue's other changes.
BASELINE_REV = "f06ba7f"
REPO = Path(__file__).resolve().parents[1]
CHAIN = 100_000
LAYERS, WIDTH = 100, 100


# ---------------------------------------------------------------- a chain failing at its root


def chain_failure() -> tuple[float, float]:
    """(the root's end -> its last descendant seen UPSTREAM_FAILED by a client, accepting the
    chain). The last job is asked for alone: a listing of 100,000 jobs would measure the listing."""
    jobs = [TitanJob("j0", command=["false"])]
    jobs += [TitanJob(f"j{i}", command=["true"], parents=[f"j{i - 1}"]) for i in range(1, CHAIN)]
    with cluster([("w1", 1)], master_args=("--limit", f"jobs_per_run={CHAIN}")) as c:
        with Timer() as accept:
            run = c.client.submit_dag("chain", jobs)
        last = c.client.wait(f"{run.id}/j{CHAIN - 1}", 600)
        seen = time.time()
        root = c.client.get_job(f"{run.id}/j0")
        assert root.state == "FAILED" and last.state == "UPSTREAM_FAILED", (root, last)
        assert c.client.get_run(run.id).state == "FAILED"
    return seen - root.attempts[-1].ended_at, accept.seconds


# ---------------------------------------------------------------- conditions, this version and the one before


def conditional_dag() -> list[TitanJob]:
    jobs = []
    for layer in range(LAYERS):
        for i in range(WIDTH):
            job_id = f"l{layer}_{i}"
            if not layer:
                jobs.append(TitanJob(job_id, command=["/bin/true"]))
                continue
            a, b = f"l{layer - 1}_{i}", f"l{layer - 1}_{(i + 1) % WIDTH}"
            when = f"({a} is None or {a}['n'] >= 0) and len(results) == 2 and {b} != 'stop'"
            jobs.append(TitanJob(job_id, command=["/bin/true"], parents=[a, b], when=when))
    return jobs


@contextlib.contextmanager
def baseline_tree(rev: str) -> Iterator[Path]:
    """A checkout of `rev` beside this one (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="titan-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev],
            check=True,
            capture_output=True,
        )
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)


@contextlib.contextmanager
def running(tree: Path | None) -> Iterator[None]:
    """Processes started inside run the code in `tree` (None: this checkout)."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tree or REPO)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"expr_{abs(hash(path))}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def evaluate_all(module: ModuleType, cases: list[tuple[str, dict[str, object]]]) -> float:
    with Timer() as t:
        for when, names in cases:
            assert module.evaluate(when, names)
    return t.seconds


def dag_seconds(tree: Path | None, jobs: list[TitanJob]) -> float:
    with running(tree), cluster([("w1", 2), ("w2", 2)]) as c:
        with Timer() as t:
            record = c.client.submit_dag("conditions", jobs).wait(600)
        assert record.state == "SUCCEEDED", record.reason
    return t.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description="Robustness at scale: see the module's docstring.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--parts", default="chain,restart,conditions", help="which of them to measure")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    rows = []
    if "chain" in parts:
        propagation, accepted = chain_failure()
        rows.append(
            (
                "root fails -> the last job UPSTREAM_FAILED, committed, seen by a client",
                f"{propagation:.2f}",
                f"{accepted:.2f} (accepting it)",
                f"{propagation / accepted:.2f}",
                "<= 1 s",
            )
        )
    if "restart" in parts:
        empty, full = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for n in range(args.rounds):  # in turns: the machine's drift falls on both
                empty.append(master_restart(Path(tmp), 0, n))
                full.append(master_restart(Path(tmp), CHAIN, n))
        rows.append(
            (
                "master kill -9 + restart -> dispatching",
                f"{statistics.median(full):.2f} ({min(full):.2f}-{max(full):.2f})",
                f"{statistics.median(empty):.2f} (empty store)",
                f"{statistics.median(full) / statistics.median(empty):.1f}",
                "<= 2 s",
            )
        )
    if rows:
        table(f"a {CHAIN:,}-job chain; a master restart with {CHAIN:,} jobs stored (seconds)", rows)
    if "conditions" not in parts:
        return

    jobs = conditional_dag()
    cases = []
    for job in jobs:
        if job.when:
            names = {p: {"n": 1} for p in job.parent_ids}
            cases.append((job.when, {**names, "results": dict(names)}))
    with baseline_tree(args.baseline_rev) as old_tree:
        old = load(old_tree / "titan_runtime" / "core" / "expr.py")
        inproc: dict[str, list[float]] = {"new": [], "old": []}
        whole: dict[str, list[float]] = {"new": [], "old": []}
        for _ in range(args.rounds):
            for name, module in (("old", old), ("new", expr)):
                inproc[name].append(evaluate_all(module, cases))
        for _ in range(max(2, args.rounds - 1)):
            for name, tree in (("old", old_tree), ("new", None)):
                whole[name].append(dag_seconds(tree, jobs))
    rows = []
    for title, found in (
        (f"evaluate {len(cases):,} conditions in-process", inproc),
        (f"run the {LAYERS * WIDTH:,}-job DAG with conditions, 2 workers x 2 slots", whole),
    ):
        new, base = statistics.median(found["new"]), statistics.median(found["old"])
        rows.append(
            (title, f"{new:.3f}", f"{base:.3f} ({args.baseline_rev})", f"{new / base:.3f}", "<= 1.10")
        )
        rows.append(
            (
                "  runs, this version / the baseline",
                " ".join(f"{v:.2f}" for v in found["new"]),
                " ".join(f"{v:.2f}" for v in found["old"]),
                "",
                "",
            )
        )
    table(
        "the budgeted condition evaluator against the one before it (seconds, median; versions in turn)", rows
    )


if __name__ == "__main__":
    sys.exit(main())
