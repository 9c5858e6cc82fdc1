"""Retention carried out: finished runs, logs and artifacts deleted as core/retention.py says.

It runs beside the master's loop, every `interval` seconds, and on demand (`titan-runtime gc`,
`runs delete`). Runs go a batch per store transaction with the event loop free between batches,
so dispatch never waits long behind a collection; walking and deleting files happens on a thread.
A run's KV keys go with it (those its jobs created, its artifact names, its usage counters); keys
made with the cluster token are the cluster's and stay. Nothing live is touched: runs still in the
core's memory, their logs, and artifacts a live job or any name refers to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from titan_runtime.core.cluster import NotFound
from titan_runtime.core.retention import DAY, Retention, StoredFile, files_to_remove
from titan_runtime.diskspace import human
from titan_runtime.master.artifacts import ArtifactStore
from titan_runtime.master.history import History
from titan_runtime.master.keys import ARTIFACT_PREFIX, artifact_key, run_key_prefixes
from titan_runtime.master.logs import LogStore
from titan_runtime.master.loop import MasterLoop

log = logging.getLogger("titan.master")

#: Run ids a report lists (the counts are complete).
REPORTED_RUNS = 100
#: An artifact file this young is kept even when nothing names it: a client may be about to submit it.
JUST_UPLOADED_S = 600.0
#: The most runs a dry run counts.
DRY_RUN_COUNT = 100_000


class RunIsLive(ValueError):
    """The run has not ended: it cannot be deleted (cancel it first)."""


@dataclass
class Report:
    """What a collection deleted (or, dry, would delete)."""

    runs: int = 0
    kv_keys: int = 0
    log_files: int = 0
    log_bytes: int = 0
    artifacts: int = 0
    artifact_bytes: int = 0
    run_ids: list[str] = field(default_factory=list)  # the first REPORTED_RUNS

    def add_runs(self, run_ids: list[str]) -> None:
        self.runs += len(run_ids)
        self.run_ids.extend(run_ids[: REPORTED_RUNS - len(self.run_ids)])

    def describe(self) -> str:
        return (
            f"{self.runs} runs, {self.kv_keys} KV keys, {self.log_files} logs ({human(self.log_bytes)}), "
            f"{self.artifacts} artifacts ({human(self.artifact_bytes)})"
        )

    def __bool__(self) -> bool:
        return bool(self.runs or self.kv_keys or self.log_files or self.artifacts)


class Collector:
    def __init__(
        self,
        loop: MasterLoop,
        history: History,
        logs: LogStore,
        artifacts: ArtifactStore,
        retention: Retention,
    ) -> None:
        self._loop = loop
        self._history = history
        self._logs = logs
        self._artifacts = artifacts
        self.retention = retention
        self._lock = asyncio.Lock()  # one collection at a time: the periodic one or a user's
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._every_interval(), name="titan-collector")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.retention.interval)
            try:
                report = await self.collect()
            except Exception:
                log.exception("a retention pass failed; the next one is in %.0f s", self.retention.interval)
                continue
            if report:
                log.info("retention deleted %s", report.describe())

    # ------------------------------------------------------------------ collecting

    async def collect(self, dry_run: bool = False) -> Report:
        """One pass: runs past retention, then logs, then artifacts."""
        async with self._lock:
            report = Report()
            await self._collect_runs(report, dry_run)
            await self._collect_logs(report, dry_run)
            await self._collect_artifacts(report, dry_run)
            return report

    async def delete_run(self, run_id: str) -> Report:
        """Delete one finished run now, whatever retention says (keep=true too: it was asked for)."""
        async with self._lock:
            run = self._history.header(run_id)
            if run is None:
                raise NotFound(f"no run {run_id!r}: list runs with `titan-runtime runs`")
            if run.state.value == "RUNNING":
                raise RunIsLive(
                    f"run {run_id} is RUNNING: cancel it first (titan-runtime cancel {run_id}), then delete it"
                )
            if run_id in self._loop.state.runs:
                raise RunIsLive(
                    f"run {run_id} has ended but its processes are still stopping: try again shortly"
                )
            report = Report()
            await self._delete([run_id], report)
            return report

    async def _collect_runs(self, report: Report, dry_run: bool) -> None:
        keep = self.retention
        ended_before = self._loop.clock() - keep.runs_days * DAY if keep.runs_days > 0 else 0.0
        if ended_before <= 0 and keep.runs <= 0:
            return
        store = self._loop.store
        if dry_run:
            found = store.collectable_runs(ended_before, keep.runs, DRY_RUN_COUNT)
            report.add_runs([r for r in found if r not in self._loop.state.runs])
            return
        while True:
            started = time.monotonic()
            found = store.collectable_runs(ended_before, keep.runs, keep.batch)
            doomed = [r for r in found if r not in self._loop.state.runs]
            if not doomed:
                return
            await self._delete(doomed, report)
            # The loop has the thread for at least as long as the batch took: catching up with a
            # long history slows dispatch by a batch at most, never holds it.
            await asyncio.sleep(max(time.monotonic() - started, 0.001))

    async def _delete(self, run_ids: list[str], report: Report) -> None:
        named = set().union(*(self._named_hashes(artifact_key(r, "")) for r in run_ids))
        report.kv_keys += self._loop.store.delete_runs(run_ids, run_key_prefixes(run_ids))
        report.add_runs(run_ids)
        self._history.forget(run_ids)
        await asyncio.to_thread(lambda: [self._logs.remove_run(r) for r in run_ids])
        if named:  # the files the runs named go too, unless something else refers to them
            orphans = named - self._artifacts_in_use()
            now = self._loop.clock()
            doomed = [f for f in self._artifacts.files_of(orphans) if now - f.mtime > JUST_UPLOADED_S]
            await asyncio.to_thread(self._artifacts.remove, doomed)
            report.artifacts += len(doomed)
            report.artifact_bytes += sum(f.size for f in doomed)

    async def _collect_logs(self, report: Report, dry_run: bool) -> None:
        keep = self.retention
        if keep.logs_days <= 0 and keep.logs_size <= 0:
            return
        live = set(self._loop.state.runs)
        now = self._loop.clock()

        def work() -> list[StoredFile]:
            doomed = files_to_remove(self._logs.files(), now, keep.logs_days, keep.logs_size, live)
            if not dry_run:
                why = f"removed by retention (logs are kept {keep.logs_days:g} days, {human(keep.logs_size)} in all)"
                self._logs.remove(doomed, why)
            return doomed

        doomed = await asyncio.to_thread(work)
        report.log_files += len(doomed)
        report.log_bytes += sum(f.size for f in doomed)

    async def _collect_artifacts(self, report: Report, dry_run: bool) -> None:
        keep = self.retention
        if keep.artifacts_days <= 0 and keep.artifacts_size <= 0:
            return
        used = self._artifacts_in_use()
        now = self._loop.clock()

        def work() -> list[StoredFile]:
            doomed = files_to_remove(
                self._artifacts.files(), now, keep.artifacts_days, keep.artifacts_size, used
            )
            if not dry_run:
                self._artifacts.remove(doomed)
            return doomed

        doomed = await asyncio.to_thread(work)
        report.artifacts += len(doomed)
        report.artifact_bytes += sum(f.size for f in doomed)

    def _artifacts_in_use(self) -> set[str]:
        """Hashes a name points at (a run's or the cluster's) or a live job runs (script, project)."""
        used = {
            artifact
            for run in self._loop.state.runs.values()
            for job in run.jobs.values()
            for artifact in (job.spec.script_hash, job.spec.project_hash)
            if artifact
        }
        return used | self._named_hashes(ARTIFACT_PREFIX)

    def _named_hashes(self, prefix: str) -> set[str]:
        """The hashes the artifact names under `prefix` point at."""
        store = self._loop.store
        found: set[str] = set()
        after = ""
        while page := store.kv_keys(prefix, after, 1000):
            for key, _ in page:
                try:
                    found.add(json.loads(store.kv_get(key) or "{}")["hash"])
                except (ValueError, KeyError, TypeError):
                    pass
            after = page[-1][0]
        return found
