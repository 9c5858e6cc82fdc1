import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))
from lib.util import banner

from titan_runtime import task

items = task.parent_results()["fetch"]["items"]
print(banner("process"), f"items={items}")
task.set_result({"squares": [i * i for i in items], "worker": os.environ["TITAN_WORKER_NAME"]})
