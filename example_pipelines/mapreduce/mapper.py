"""Map: double every number of one half of the input."""

import json
import sys

from titan_runtime import task

index, factor = int(sys.argv[1]), int(sys.argv[2])
numbers = json.loads(task.get_artifact("numbers.json").read_text())
half = numbers[index::2]
mapped = [n * factor for n in half]
with open("mapped.json", "w") as fh:
    json.dump(mapped, fh)
task.publish_artifact(f"mapped_{index}.json", "mapped.json")
print(f"mapper {index}: {len(half)} numbers, mapped sum {sum(mapped)}")
