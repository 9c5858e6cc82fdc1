"""Deterministic Titan ids for Airflow task tries.

One Airflow try (dag id, task id, run id, map index, try number) maps to exactly one Titan run id.
Titan accepts a submission under an existing run id as "that run" when the spec is the same, so
an operator executed again for the same try (a worker or triggerer restart, a resumed deferral)
finds the run it already started instead of running the work twice, while a retry (the next
try number) gets a fresh run. Nothing here imports Airflow or talks to Titan.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

#: Titan's id rule: 1-128 of letters, digits, '_', '.', '-', not starting with '.' or '-'.
MAX_ID_LENGTH = 128
ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}\Z")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")
RUN_ID_PREFIX = "af_"


TryKey = tuple[str, str, str, int, int]


def try_key(ti: Any) -> TryKey:
    """(dag id, task id, run id, try number, map index) of a task instance: what names its Titan run."""
    map_index = getattr(ti, "map_index", -1)
    return (ti.dag_id, ti.task_id, ti.run_id, int(ti.try_number), -1 if map_index is None else int(map_index))


def sanitise(text: str) -> str:
    """`text` with every run of characters Titan ids do not allow replaced by '_'."""
    return _UNSAFE.sub("_", text).strip("._-")


def titan_run_id(dag_id: str, task_id: str, run_id: str, try_number: int, map_index: int = -1) -> str:
    """The Titan run id of one Airflow try: readable (dag and task), unique (a hash of all five parts).

    Sanitising alone could map two Airflow ids to one Titan id ("a:b" and "a_b"); the hash of the
    exact values keeps them apart, and the try number stays readable at the end.
    """
    if not isinstance(try_number, int) or isinstance(try_number, bool) or try_number < 0:
        raise ValueError(f"try_number must be a non-negative integer, not {try_number!r}")
    exact = json.dumps([dag_id, task_id, run_id, int(map_index), try_number])
    digest = hashlib.sha256(exact.encode("utf-8")).hexdigest()[:16]
    suffix = f".{digest}.try{try_number}"
    readable = sanitise(f"{dag_id}.{task_id}") or "task"
    if map_index >= 0:
        readable += f".m{map_index}"
    room = MAX_ID_LENGTH - len(RUN_ID_PREFIX) - len(suffix)
    return RUN_ID_PREFIX + readable[:room].rstrip("._-") + suffix


def titan_job_id(task_id: str) -> str:
    """The id of the job inside its Titan run: the task id, made safe."""
    return (sanitise(task_id) or "task")[:MAX_ID_LENGTH].rstrip("._-")


def run_labels(
    dag_id: str, task_id: str, run_id: str, try_number: int, map_index: int = -1
) -> dict[str, str]:
    """Labels on the Titan run that say which Airflow try it is (shown by `titan-runtime runs --json`)."""
    labels = {**instance_labels(dag_id, task_id, run_id), "airflow.try_number": str(try_number)}
    if map_index >= 0:
        labels["airflow.map_index"] = str(map_index)
    return labels


def instance_labels(dag_id: str, task_id: str, run_id: str) -> dict[str, str]:
    """The labels every Titan run of one task's tries in one DAG run has (to list them by)."""
    return {"airflow.dag_id": dag_id, "airflow.task_id": task_id, "airflow.run_id": run_id}


def try_of(labels: dict[str, str], map_index: int = -1) -> int | None:
    """The try number a Titan run's labels name, if the run is of the map index `map_index` (the
    labels of `instance_labels` being given); None for another map index or unreadable labels."""
    if labels.get("airflow.map_index", "-1") != str(map_index):
        return None
    number = labels.get("airflow.try_number", "")
    return int(number) if number.isdigit() else None


def airflow_env(
    dag_id: str, task_id: str, run_id: str, try_number: int, map_index: int = -1
) -> dict[str, str]:
    """The AIRFLOW_CTX_* variables Airflow gives local tasks, for the remote process too."""
    env = {
        "AIRFLOW_CTX_DAG_ID": dag_id,
        "AIRFLOW_CTX_TASK_ID": task_id,
        "AIRFLOW_CTX_DAG_RUN_ID": run_id,
        "AIRFLOW_CTX_TRY_NUMBER": str(try_number),
    }
    if map_index >= 0:
        env["AIRFLOW_CTX_MAP_INDEX"] = str(map_index)
    return env
