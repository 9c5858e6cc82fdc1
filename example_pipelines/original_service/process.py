import json

from titan_runtime import task

items = task.parent_results()["fetch"]
with open("report.json", "w") as fh:
    json.dump({"squares": [i * i for i in items]}, fh)
task.publish_artifact("report.json", "report.json")
print(f"process: published squares of {items}")
