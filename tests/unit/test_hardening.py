"""The worker makes itself non-dumpable: closed to the other processes of its user (its jobs)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import ctypes
from titan_runtime.worker.hardening import make_undumpable
before = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
print(before, make_undumpable(), ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))
"""


def test_make_undumpable_clears_the_flag() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "True", "0"]
