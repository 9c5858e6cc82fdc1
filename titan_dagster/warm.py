"""Imported by the worker's launcher that forks warm steps and run workers (`remote.WARM_PACKAGES`),
never by the integration itself: what such a process imports before its own code runs, so that the
launcher has it imported once and each forked process starts with it. User code is not among it:
a step imports its code location in the forked process, so a changed one is picked up at once.
"""

from __future__ import annotations

import importlib

import dagster  # noqa: F401 - the step's own entry point (`python -m dagster api ...`)

import titan_dagster  # noqa: F401
from titan_dagster._compat import STEP_MODULES

for _name in STEP_MODULES:
    importlib.import_module(_name)
