from titan_runtime import task

key = f"handoff/{task.current().run_id}"
value = task.store_get(key)
members = sorted(task.store_smembers(f"{key}/members"))
print(f"consumer: got {value!r}")
print(f"consumer: members {members}")
task.set_result({"value": value, "members": members})
