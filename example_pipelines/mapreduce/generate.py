import json
import random
import sys

from titan_runtime import task

count = int(sys.argv[1])
numbers = [random.randint(1, 100) for _ in range(count)]
with open("numbers.json", "w") as fh:
    json.dump(numbers, fh)
task.publish_artifact("numbers.json", "numbers.json")
print(f"generated {count} numbers, sum {sum(numbers)}")
task.set_result({"count": count, "sum": sum(numbers)})
