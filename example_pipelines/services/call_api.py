"""A batch job that depends on the api service: Titan starts it once the api is HEALTHY and tells
it where the api answers in $TITAN_SERVICE_API_ADDR."""

import json
import os
import urllib.request

from titan_runtime import task

address = os.environ["TITAN_SERVICE_API_ADDR"]
with urllib.request.urlopen(f"http://{address}/hello", timeout=10) as response:
    answer = json.load(response)
print(f"called http://{address}/hello: {answer}")
task.set_result(answer)
