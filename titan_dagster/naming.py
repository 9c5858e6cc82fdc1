"""Titan run ids derived from Dagster's identities, so every submission is idempotent.

A Dagster step attempt is one Titan run of one job. Its Titan run id is a pure function of the
Dagster run id, the step key and the attempt number: launching the same attempt twice (a
re-delivered launch, a resumed run worker) finds the run that already exists instead of starting
a duplicate, and a retry (a new attempt) gets a new id and so a new Titan job. Titan ids allow
only `[A-Za-z0-9_.-]` (at most 128, not starting with `.` or `-`), while step keys may hold
anything (`op[partition]`, `graph.op`), so names are slugged and a hash of the original keeps two
different step keys that slug alike apart.
"""

from __future__ import annotations

import hashlib
import re

#: Titan's id rule (titan_runtime.core.model.ID_PATTERN), restated: the client is all we may import.
TITAN_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}\Z")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")

#: Job id of the single job inside each Titan run we submit.
STEP_JOB_ID = "step"
RUN_WORKER_JOB_ID = "run-worker"

#: Labels on every Titan run we submit, so `titan-runtime runs` shows where it came from.
LABEL_RUN_ID = "dagster/run_id"
LABEL_STEP_KEY = "dagster/step_key"
LABEL_ATTEMPT = "dagster/attempt"
LABEL_JOB = "dagster/job"
LABEL_KIND = "dagster/kind"


def slug(text: str, limit: int) -> str:
    """`text` with every run of characters Titan ids refuse replaced by `_`, cut to `limit`."""
    cleaned = _UNSAFE.sub("_", text).lstrip(".-")[:limit]
    return cleaned or "x"


def digest(*parts: str, size: int = 10) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:size]


def group_id(dagster_run_id: str) -> str:
    """The Titan `agent_run_id` shared by every Titan run of one Dagster run (steps, run worker, Pipes)."""
    return "dagster-" + slug(dagster_run_id, 100)


def step_run_id(dagster_run_id: str, step_key: str, attempt: int) -> str:
    """The Titan run id of one attempt (0 = first) of one step."""
    run_id = (
        f"dg-{slug(dagster_run_id, 40)}-{slug(step_key, 48)}-{digest(dagster_run_id, step_key)}-a{attempt}"
    )
    assert TITAN_ID.match(run_id), run_id
    return run_id


def run_worker_run_id(dagster_run_id: str, resume: int = 0) -> str:
    """The Titan run id of a Dagster run's run worker (`dagster api execute_run`), or of the
    `resume`-th run worker that resumed it after the one before died."""
    run_id = f"dg-{slug(dagster_run_id, 100)}-run-{digest(dagster_run_id, size=8)}"
    return f"{run_id}-r{resume}" if resume else run_id


def pipes_run_id(dagster_run_id: str, step_key: str, attempt: int, invocation: int) -> str:
    """The Titan run id of the `invocation`-th Pipes launch (1 = first) of one step attempt."""
    return (
        f"dgp-{slug(dagster_run_id, 40)}-{slug(step_key, 40)}-{digest(dagster_run_id, step_key)}"
        f"-a{attempt}-{invocation}"
    )


def job_id_for(name: str) -> str:
    return slug(name, 64)
