"""One step of the test pipelines: prints three lines, sets its name as result, fails when told to."""

import sys

from titan_runtime import task

name = sys.argv[1]
for i in range(3):
    print(f"{name} says {i}")
if sys.argv[2:] == ["fail"]:
    print(f"{name} is giving up", file=sys.stderr)
    sys.exit(5)
task.set_result(f"{name} done")
