import sys

from titan_runtime import task

count = int(sys.argv[sys.argv.index("--items") + 1])
print(f"fetch: {count} items")
task.set_result(list(range(count)))
