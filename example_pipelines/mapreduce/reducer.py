import json

from titan_runtime import task

total = 0
for index in range(2):
    part = json.loads(task.get_artifact(f"mapped_{index}.json").read_text())
    total += sum(part)
expected = task.result_of("generate")["sum"] * 2
print(f"reducer: total {total} (twice the generated sum: {total == expected})")
task.set_result({"total": total})
