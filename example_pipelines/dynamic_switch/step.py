import os
import sys

from titan_runtime import task

stage = sys.argv[1]
if stage == "measure":
    load = float(os.environ["LOAD"])
    path = "deep_prepare" if load > 0.5 else "fast_scan"
    print(f"measured load {load}: taking {path}")
    task.set_result(path)  # a branch job's result names the children to follow
elif stage == "fast":
    task.set_result({"path": "fast", "findings": 1})
elif stage == "prepare":
    task.set_result({"shards": 2})
elif stage == "work":
    task.set_result({"shard": int(sys.argv[2]), "findings": 3})
elif stage == "merge":
    task.set_result({"path": "deep", "findings": sum(r["findings"] for r in task.parent_results().values())})
else:
    done = [r for r in task.parent_results().values() if r]
    print(f"report: the {done[0]['path']} path found {done[0]['findings']} issue(s)")
