import os

from titan_runtime import task

worker = os.environ["TITAN_WORKER_NAME"]
if "gpu" in worker:
    raise SystemExit(f"CUDA out of memory on {worker}")  # the GPU attempt fails...
print(f"trained on {worker} (attempt {os.environ['TITAN_ATTEMPT']})")  # ...the fallback succeeds
task.set_result({"worker": worker, "attempt": int(os.environ["TITAN_ATTEMPT"])})
