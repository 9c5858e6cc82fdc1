"""Runs on a Titan worker through Pipes: records its pid, then waits to be cancelled."""

import os
import sys
import time

from dagster_pipes import open_dagster_pipes

with open_dagster_pipes() as pipes:
    path = pipes.extras["pid_file"]
    with open(path + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    print("pipes sleeper: waiting to be cancelled", file=sys.stderr, flush=True)
    time.sleep(300)
