"""Runs on a Titan worker: opens Pipes, prints a clue, then fails."""

import sys

from dagster_pipes import open_dagster_pipes

with open_dagster_pipes() as pipes:
    print("pipes script: about to fail (PIPES-FAIL-MARKER)", file=sys.stderr, flush=True)
sys.exit(4)
