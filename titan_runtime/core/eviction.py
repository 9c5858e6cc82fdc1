"""Runs leaving memory: an ended run is taken out of the state once nothing of it can change, so
that memory holds what is live and not the cluster's history (the master reads ended runs from its
store: master/history.py). A part of ClusterState (core/cluster.py), sharing its state."""

from __future__ import annotations

from titan_runtime.core.common import ClusterPart
from titan_runtime.core.model import Run


class EvictionMixin(ClusterPart):
    def _track_ended(self, run: Run) -> None:
        """Note an ended run for `evict_finished`, with its attempts still live (a cancel in flight)."""
        self._finishing[run.id] = {
            job.current.id for job in run.jobs.values() if job.current and not job.current.state.terminal
        }

    def evict_finished(self) -> list[Run]:
        """Take ended runs out of memory once nothing of theirs can change any more (every attempt
        ended, every row committed: the master calls this after a commit). From then on the master
        reads them from the store, so memory holds what is live, not the history. Returns them."""
        if self.has_changes():  # rows not yet taken could belong to them
            return []
        evicted: list[Run] = []
        for run_id, live in list(self._finishing.items()):
            live = {a for a in live if a in self._attempts and not self._attempts[a][1].state.terminal}
            if live:
                self._finishing[run_id] = live
                continue
            del self._finishing[run_id]
            run = self.runs.pop(run_id)
            for job in run.jobs.values():
                for attempt_id in [*(a.id for a in job.attempts), *job.voided]:
                    self._attempts.pop(attempt_id, None)
                holders = self._runs_by_job_id.get(job.id)
                if holders is not None:
                    holders.remove(run_id)
                    if not holders:
                        del self._runs_by_job_id[job.id]
                if job.spec.is_service:
                    deployments = self.services.get(job.spec.service_id, [])
                    if job.key in deployments:
                        deployments.remove(job.key)
                    if not deployments:
                        self.services.pop(job.spec.service_id, None)
            evicted.append(run)
        return evicted
