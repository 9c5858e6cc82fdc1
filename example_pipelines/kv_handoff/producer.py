from titan_runtime import task

key = f"handoff/{task.current().run_id}"
task.store_put(key, "payload, with a comma — and ünïcode")
task.store_sadd(f"{key}/members", "alpha")
task.store_sadd(f"{key}/members", "beta,gamma")
print(f"producer: stored {key}")
