import os

print(f"prepare: running on {os.environ['TITAN_WORKER_NAME']}")
