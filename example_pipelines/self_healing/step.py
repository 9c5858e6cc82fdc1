import sys

from titan_runtime import task

kind, key = sys.argv[1], sys.argv[2]
if kind == "repair":
    task.store_sadd(f"{key}/repairs", sys.argv[3])
    print(f"applied repair {sys.argv[3]}")
else:
    repairs = task.store_smembers(f"{key}/repairs")
    if len(repairs) < 2:  # the task only passes once two repairs are in place
        raise SystemExit(f"fragile task failed: {len(repairs)} repair(s) applied so far")
    print("fragile task passed")
