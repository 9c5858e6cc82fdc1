from titan_runtime import task

results = task.parent_results()
total = results["left"] + results["right"]
print(f"sink: left={results['left']} right={results['right']} total={total}")
task.set_result(total)
