"""Run a benchmark against this checkout and an earlier commit, taking turns, in one go.

    .venv/bin/python benchmarks/compare_versions.py REV benchmarks/bench_latency.py [ARGS...] [--turns 2]

Each turn runs the script once with the earlier commit's code (a `git worktree` of REV, put first
on PYTHONPATH for the script and every process it starts) and once with this checkout's, so that
the drift of the machine (10-30 % within a minute on these VMs) falls on both alike. The outputs
are printed as they come, labelled; compare their tables.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(label: str, tree: Path, script: str, args: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=str(tree))
    print(f"\n===== {label} ({tree})", flush=True)
    subprocess.run([sys.executable, str(tree / script), *args], env=env, cwd=tree, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev")
    parser.add_argument("script", help="the benchmark, relative to the repository (benchmarks/bench_x.py)")
    parser.add_argument("--turns", type=int, default=2)
    known, rest = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="titan-compare-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), known.rev], check=True
        )
        try:
            for turn in range(known.turns):
                run(f"turn {turn + 1}: {known.rev}", tree, known.script, rest)
                run(f"turn {turn + 1}: this checkout", REPO, known.script, rest)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)


if __name__ == "__main__":
    main()
