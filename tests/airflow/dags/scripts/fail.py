"""A Titan job for the Airflow tests: optionally waits for a gate file, prints 50 lines, then an error
on stderr, then exits 3."""

import os
import sys
import time

gate = os.environ.get("GATE", "")
if gate:
    while not os.path.exists(gate):
        time.sleep(0.01)

for i in range(50):
    print(f"step {i}")
print("boom: the input was bad", file=sys.stderr)
sys.exit(3)
