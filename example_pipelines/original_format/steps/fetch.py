import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))
from lib.util import banner

from titan_runtime import task

parser = argparse.ArgumentParser()
parser.add_argument("--source")
parser.add_argument("--limit", type=int)
args = parser.parse_args()
print(banner("fetch"), f"source={args.source} limit={args.limit}")
task.set_result({"items": list(range(args.limit)), "fetched_at": time.time()})
