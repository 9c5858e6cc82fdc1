from titan_runtime import task

result = task.parent_results()["process"]
print(f"publish: squares {result['squares']}")
