"""Pretend to extract some rows: print each one, and return how many and their total."""

import os
import sys

from titan_runtime import task

rows = int(sys.argv[1])
print(f"extracting {rows} rows for {os.environ.get('SOURCE', 'nobody')}")
values = [n * n for n in range(1, rows + 1)]
for n, value in enumerate(values, 1):
    print(f"row {n}: {value}")
task.set_result({"rows": rows, "total": sum(values)})
