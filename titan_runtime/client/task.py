"""The running job's view of Titan: `from titan_runtime import task`.

Inside a job the worker sets TITAN_RUN_ID, TITAN_JOB_ID, TITAN_ATTEMPT, TITAN_ADDRESS, a
credential scoped to the job's run in TITAN_TOKEN, and TITAN_RESULT_FILE. These helpers read
them, so a job's code needs no configuration to talk to the master.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from titan_runtime.client.errors import TitanError
from titan_runtime.core.names import MAX_RESULT_BYTES

if TYPE_CHECKING:
    from titan_runtime.client.sync import TitanClient


class NotInJob(TitanError):
    """A task.* helper was called outside a Titan job."""


@dataclass(frozen=True)
class TaskContext:
    run_id: str
    job_id: str
    attempt: int
    attempt_id: str
    worker: str
    workspace: str

    @property
    def ref(self) -> str:
        return f"{self.run_id}/{self.job_id}"


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise NotInJob(f"{name} is not set: task.* helpers work only inside a job that Titan runs")
    return value


def current() -> TaskContext:
    """Which run, job and attempt this process is."""
    return TaskContext(
        run_id=_env("TITAN_RUN_ID"),
        job_id=_env("TITAN_JOB_ID"),
        attempt=int(_env("TITAN_ATTEMPT")),
        attempt_id=os.environ.get("TITAN_ATTEMPT_ID", ""),
        worker=os.environ.get("TITAN_WORKER_NAME", ""),
        workspace=os.environ.get("TITAN_WORKSPACE", os.getcwd()),
    )


def in_job() -> bool:
    return bool(os.environ.get("TITAN_RUN_ID") and os.environ.get("TITAN_JOB_ID"))


def set_result(value: Any) -> None:
    """Record this job's result (JSON-serialisable, at most 1 MB); children and clients can read it."""
    text = json.dumps(value)
    if len(text.encode()) > MAX_RESULT_BYTES:
        raise ValueError(
            f"result of {len(text.encode())} bytes is over the 1 MB limit; "
            "publish large data as an artifact and return its name"
        )
    path = _env("TITAN_RESULT_FILE")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


_client: TitanClient | None = None


def client() -> TitanClient:
    """A TitanClient authenticated as this job (scoped to its run)."""
    global _client
    if _client is None:
        from titan_runtime.client.sync import TitanClient  # gRPC loads only when a job talks to the master

        _env("TITAN_ADDRESS")
        _client = TitanClient()
    return _client


def result_of(job_id: str) -> Any:
    """The result of another job of this run (by its id in the run)."""
    return client().get_result(f"{current().run_id}/{job_id}")


def parent_results() -> dict[str, Any]:
    """The results of this job's parents, by parent id (None for a parent that set none).

    A parent that ran with map_over gives the list of its instances' results, in item order."""
    run_id = current().run_id
    parents = [p for p in os.environ.get("TITAN_PARENTS", "").split(",") if p]
    return {parent: client().get_result(f"{run_id}/{parent}") for parent in parents}


def logs_of(job_id: str) -> str:
    """The output of another job of this run (its latest attempt)."""
    return client().fetch_logs(f"{current().run_id}/{job_id}")


def add_jobs(jobs: Any, after: str | list[str] | None = None, base_dir: str | None = None) -> list[str]:
    """Add jobs to this run while it runs. Jobs may depend on any job of the run, this one included;
    `after` adds a dependency on these jobs (e.g. `after=task.current().job_id`) to every job that has
    none within the added ones. Returns the new job ids."""
    batch = list(jobs)
    ids = {job.id for job in batch}
    if after is not None:
        extra = [after] if isinstance(after, str) else list(after)
        for job in batch:
            if not any(p in ids for p in job.parent_ids):
                job.parents = [*job.parent_ids, *(p for p in extra if p not in job.parent_ids)]
    return client().add_jobs(current().run_id, batch, base_dir)


def add_iteration(jobs: list[str], max_iterations: int = 10) -> list[str]:
    """Enqueue the next iteration of a loop's sub-graph (`jobs`, by their first ids), starting after this
    job. Jobs waiting on the loop wait on the new iteration instead. Refused past `max_iterations`."""
    me = current()
    return client().add_iteration(me.run_id, jobs, me.job_id, max_iterations)


def iteration() -> int:
    """This job's loop iteration (1 for the first)."""
    return int(os.environ.get("TITAN_ITERATION") or 1)


def map_item() -> Any:
    """The item this mapped job runs for (map_over)."""
    return json.loads(_env("TITAN_MAP_ITEM"))


def map_index() -> int:
    return int(_env("TITAN_MAP_INDEX"))


def publish_artifact(name: str, path: str | os.PathLike[str]) -> str:
    """Publish a file under `name` in this run's namespace; other jobs of the run get it by name."""
    return client().publish_artifact(name, Path(path))


def get_artifact(name: str, dest: str | os.PathLike[str] | None = None) -> Path:
    """Fetch an artifact published in this run (or in the cluster's namespace) to `dest`."""
    return client().get_artifact(name, dest)


def store_put(key: str, value: Any) -> None:
    client().store_put(key, value)


def store_get(key: str) -> str | None:
    return client().store_get(key)


def store_incr(key: str, amount: int = 1) -> int:
    return client().store_incr(key, amount)


def store_cas(key: str, expected: Any, value: Any) -> bool:
    return client().store_cas(key, expected, value)


def store_sadd(key: str, member: Any) -> bool:
    return client().store_sadd(key, member)


def store_srem(key: str, member: Any) -> bool:
    return client().store_srem(key, member)


def store_smembers(key: str) -> set[str]:
    return client().store_smembers(key)


def store_delete(key: str) -> bool:
    return client().store_delete(key)
