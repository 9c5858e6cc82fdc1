"""A Titan job for the Airflow tests: prints 50 lines, then an error on stderr, then exits 3."""

import sys

for i in range(50):
    print(f"step {i}")
print("boom: the input was bad", file=sys.stderr)
sys.exit(3)
