from titan_runtime import task

parts = task.parent_results()
total = sum(p["words"] for p in parts.values())
for job_id in sorted(parts):
    print(f"{job_id}: {parts[job_id]['part']} had {parts[job_id]['words']} words")
print(f"total words: {total}")
task.set_result(total)
