"""A Titan job for the Airflow tests: greets, optionally waits for a gate file, prints lines, sets a result."""

import os
import sys
import time

from titan_runtime import task

word = sys.argv[1]
print(f"hello {word}", flush=True)
gate = os.environ.get("GATE", "")
if gate:
    while not os.path.exists(gate):
        time.sleep(0.01)
for i in range(int(os.environ.get("LINES", "5"))):
    print(f"line {i}")
print(f"warning about {word}", file=sys.stderr)
task.set_result({"word": word, "try": int(os.environ["AIRFLOW_CTX_TRY_NUMBER"])})
