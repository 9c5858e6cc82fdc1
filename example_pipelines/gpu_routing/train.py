import os

from titan_runtime import task

worker = os.environ["TITAN_WORKER_NAME"]
print(f"train: running on {worker}")
task.set_result({"trained_on": worker})
