"""Starts a grandchild, records both pids in Titan's KV store under sleeper/<name>, then waits forever."""

import os
import subprocess
import sys

from titan_runtime import task

child = subprocess.Popen(["sleep", "300"])
task.store_put(f"sleeper/{sys.argv[1]}", f"{os.getpid()} {child.pid}")
print(f"{sys.argv[1]} is sleeping", flush=True)
child.wait()
