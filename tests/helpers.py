"""Test helpers live in titan_runtime.testing (benchmarks and integrations use them too)."""

from titan_runtime.testing import PYTHON, ProcessCluster, pid_alive, wait_until

__all__ = ["PYTHON", "ProcessCluster", "pid_alive", "wait_until"]
