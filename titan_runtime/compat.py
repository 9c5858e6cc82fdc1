"""The original Titan's SDK on Titan: change `from titan_sdk.titan_sdk import TitanClient, TitanJob`
to `from titan_runtime.compat import TitanClient, TitanJob`, and nothing else.

The original answered with strings where Titan's SDK returns values or raises: a status word
("COMPLETED", "DEAD"), "NULL" for a job or key it does not know, "OK" for a write, True/False for
artifacts, and its ids carry a "DAG-" prefix. Code written for it checks those (`while
get_job_status(id) != "COMPLETED"`, `if store_put(k, v) == "OK"`), so this client gives them back.
What differs on purpose is in docs/migrating.md. New code should use `titan_runtime.TitanClient`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from titan_runtime.client.errors import JobNotFound, TitanError
from titan_runtime.client.job import TitanJob
from titan_runtime.client.records import JobRecord
from titan_runtime.client.sync import TitanClient as _Client

__all__ = ["NULL", "ORIGINAL_WORD", "TitanClient", "TitanJob", "original_word"]

T = TypeVar("T")
#: What the original answered for a job, key or artifact it did not know.
NULL = "NULL"
PREFIX = "DAG-"
#: Titan's job states in the original's words (its PENDING, RUNNING, COMPLETED, FAILED, DEAD, CANCELLED).
ORIGINAL_WORD = {
    "PENDING": "PENDING",  # waiting for parents, a delay or a retry
    "READY": "PENDING",  # queued for a worker
    "ASSIGNED": "RUNNING",
    "RUNNING": "RUNNING",
    "WAITING_APPROVAL": "RUNNING",  # the original's gate was a job that ran until decided
    "STARTING": "RUNNING",
    "HEALTHY": "RUNNING",
    "RESTARTING": "RUNNING",
    "SUCCEEDED": "COMPLETED",
    "SKIPPED": "COMPLETED",  # a branch not taken ended without error (Titan's dynamic DAGs only)
    "FAILED": "FAILED",
    "UPSTREAM_FAILED": "FAILED",  # the original left these waiting for ever
    "CANCELLED": "CANCELLED",
    "STOPPED": "CANCELLED",
}


def original_word(job: JobRecord) -> str:
    """The original's word for a job's state; DEAD for a job that failed because its worker was
    lost more often than its retries allow (the original's dead-lettered job)."""
    if job.state == "FAILED" and job.reason.startswith("lost "):
        return "DEAD"
    return ORIGINAL_WORD.get(job.state, job.state)


class TitanClient(_Client):
    """`titan_runtime.TitanClient` answering as the original did. Every call Titan's client has
    works too (`wait`, `cancel`, `follow_logs`...), with "DAG-" ids accepted where jobs are named."""

    def _job(self, call: Callable[[str], T], job_id: str) -> T:
        """`call(job_id)`, the original's "DAG-" prefix taken off first (the original's job ids never
        start with it: its master added it), and tried as given when that finds nothing."""
        if job_id.startswith(PREFIX):
            try:
                return call(job_id[len(PREFIX) :])
            except JobNotFound:
                pass
        return call(job_id)

    def get_job_status(self, job_id: str) -> str:  # type: ignore[override]
        """The original's status word (see ORIGINAL_WORD), or "NULL" for a job Titan does not know."""
        try:
            return original_word(self._job(super().get_job, job_id))
        except JobNotFound:
            return NULL

    def get_job(self, job_id: str) -> JobRecord:  # type: ignore[override]
        return self._job(super().get_job, job_id)

    def fetch_logs(self, job_id: str, attempt: int | None = None) -> str:  # type: ignore[override]
        return self._job(lambda ref: super(TitanClient, self).fetch_logs(ref, attempt), job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:  # type: ignore[override]
        return self._job(lambda ref: super(TitanClient, self).wait(ref, timeout), job_id)

    def cancel(  # type: ignore[override]
        self, job_or_run_id: str, wait: bool = False, timeout: float = 30.0, reason: str = ""
    ) -> list[str]:
        return self._job(
            lambda ref: super(TitanClient, self).cancel(ref, wait, timeout, reason), job_or_run_id
        )

    def stop_service(self, service_id: str) -> str:  # type: ignore[override]
        """ "STOPPED", or an "ERROR: ..." string saying why not (as the original answered)."""
        try:
            self._job(super().stop_service, service_id)
        except TitanError as exc:
            return f"ERROR: {exc}"
        return "STOPPED"

    def submit_yaml(  # type: ignore[override]
        self,
        path: str | Path,
        agent_run_id: str | None = None,
        wait: bool = False,
        poll_interval: float | None = None,
        timeout: float | None = 300,
        **kwargs: Any,
    ) -> Any:
        """As Titan's, and False (not an exception) when `wait` ran out of `timeout` seconds."""
        try:
            return super().submit_yaml(path, agent_run_id, wait, poll_interval, timeout, **kwargs)
        except TimeoutError:
            return False

    # ------------------------------------------------------------------ the store

    def store_put(self, key: str, value: Any) -> str:  # type: ignore[override]
        super().store_put(key, value)
        return "OK"

    def store_get(self, key: str) -> str:  # type: ignore[override]
        """The value, or "NULL" when the key holds none."""
        value = super().store_get(key)
        return NULL if value is None else value

    def store_sadd(self, key: str, member: Any) -> int:  # type: ignore[override]
        """1 if the member was new, 0 if the set had it."""
        return int(super().store_sadd(key, member))

    def store_smembers(self, key: str) -> list[str]:  # type: ignore[override]
        """The members as a list (sorted; the original's came in no particular order)."""
        return sorted(super().store_smembers(key))

    # ------------------------------------------------------------------ files

    def upload_file(self, path: str | Path) -> str:  # type: ignore[override]
        """ "UPLOAD_SUCCESS", or "ERROR: File not found at: PATH"."""
        if not Path(path).is_file():
            return f"ERROR: File not found at: {path}"
        super().upload_file(path)
        return "UPLOAD_SUCCESS"

    def upload_project_folder(self, folder: str | Path, project_name: str | None = None) -> str:  # type: ignore[override]
        """ "UPLOAD_SUCCESS", or "ERROR: Folder not found at: PATH". (`project_name` named the
        original's zip; Titan's archives are named by their content.)"""
        if not Path(folder).is_dir():
            return f"ERROR: Folder not found at: {folder}"
        super().upload_project_folder(folder)
        return "UPLOAD_SUCCESS"

    def deploy_script(self, filepath: str | Path) -> str:  # type: ignore[override]
        """ "DEPLOY_SUCCESS" once the script is on the master (jobs name it by path, see
        docs/migrating.md), or "ERROR: File not found at: PATH"."""
        if not Path(filepath).is_file():
            return f"ERROR: File not found at: {filepath}"
        super().upload_file(filepath)
        return "DEPLOY_SUCCESS"

    def publish_artifact(self, key: str, filename: str | Path, run_id: str | None = None) -> bool:  # type: ignore[override]
        """True once the file is stored under `key`; False (said on stdout, as the original did)
        when it could not be."""
        try:
            super().publish_artifact(key, filename, run_id)
        except (TitanError, OSError) as exc:
            print(f"[SDK] publish_artifact: upload failed — {exc}")
            return False
        return True

    def get_artifact(  # type: ignore[override]
        self, key: str, save_path: str | Path | None = None, run_id: str | None = None
    ) -> bool:
        """True once the file published under `key` is at `save_path` (default: its name in the
        current directory); False when there is none or it could not be fetched."""
        try:
            super().get_artifact(key, save_path, run_id)
        except (TitanError, OSError) as exc:
            print(f"[SDK] Failed to fetch: {exc}")
            return False
        return True

    fetch_artifact = get_artifact
