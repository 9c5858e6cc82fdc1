"""The shapes of ids, tags and secret names, and the few constants a client checks with too.

Apart from the core's records on purpose: every client (and every CLI command) imports these, and
the records' dataclasses cost more to define than a command's own work.
"""

from __future__ import annotations

import re

# Ids travel in "RUN/JOB" references, file paths and environment variable names: keep them tame.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@\-]{0,127}\Z")
#: A run id starts with a letter or digit: "_" names the cluster-wide artifact namespace, and a run of
#: that id would give its jobs' credentials the cluster's artifacts.
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,127}\Z")
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,63}\Z")
#: A secret's name (`titan-runtime secret set NAME`) and the environment variable a job gets it in.
SECRET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}\Z")
SECRET_ENV_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
#: Secrets one job may name: each is decrypted at every assignment and masked in all its output.
MAX_SECRETS_PER_JOB = 64

#: The original Titan's "any worker" requirement.
GENERAL = "GENERAL"
#: Largest result a job may commit (JSON text, in bytes of UTF-8).
MAX_RESULT_BYTES = 1024 * 1024
#: Largest call a function task carries (JobSpec.call: its function and arguments, pickled, as
#: base64 text): larger data goes as an artifact, or as another task's result (a future).
MAX_CALL_CHARS = 1024 * 1024
#: Longest a run may be held open past its jobs' end (SubmitRun's and AddJobs' open_for), seconds.
MAX_OPEN_FOR = 3600.0

#: How a job's dependents decide to run from its outcome (JobSpec.trigger_rule).
TRIGGER_RULES = ("all_success", "all_done", "one_success", "none_failed")
#: A Python module's dotted name, as `python -m` and `--preload` take it.
MODULE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,15}\Z")
#: Packages one job may ask its worker to preload (JobSpec.preload).
MAX_PRELOAD = 16
#: A service's named port.
PORT_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}\Z")
