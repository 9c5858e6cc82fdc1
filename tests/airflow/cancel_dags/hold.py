"""A Titan job that records its pid in DIR/<its Titan run id>.pid and runs until DIR/gate exists."""

import os
import sys
import time
from pathlib import Path

folder = Path(sys.argv[1])
folder.mkdir(parents=True, exist_ok=True)
(folder / f"{os.environ['TITAN_RUN_ID']}.pid").write_text(str(os.getpid()))
print("holding", os.environ["TITAN_RUN_ID"], flush=True)
while not (folder / "gate").exists():
    time.sleep(0.05)
print("released", flush=True)
