import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))
from lib.util import banner

print(banner("init"))
