"""Dependencies: a job's place among its parents and children, and what its trigger rule and
condition decide once its parents resolve. A part of ClusterState (core/cluster.py), sharing its
state: events in, effects out, no I/O."""

from __future__ import annotations

from titan_runtime.core.common import BadResult, ClusterPart
from titan_runtime.core.expr import ExpressionError, evaluate
from titan_runtime.core.model import Job, JobState, Run


class DependenciesMixin(ClusterPart):
    def _inputs(self, job: Job) -> dict[str, str]:
        """A function task's parents' results, by job id: what the futures it was passed resolve to."""
        run = self.runs[job.run_id]
        found = (run.jobs.get(parent) for parent in job.parents)
        return {p.id: p.result for p in found if p is not None and p.result is not None}

    @staticmethod
    def _link(run: Run, job: Job) -> str:
        """Enter a job in its parents' child lists (and a mapped instance in its template's).
        Returns the first parent it names that the run does not have (only a damaged store can)."""
        missing = ""
        for parent_id in job.parents:
            parent = run.jobs.get(parent_id)
            if parent is None:
                missing = missing or parent_id
                continue
            parent.children.append(job.id)
            if not parent.released:
                job.waiting_on += 1
        template = run.jobs.get(job.spec.map_of) if job.spec.map_of else None
        if template is not None:
            template.mapped.append(job.id)
        return missing

    def _notify_children(self, job: Job, now: float) -> None:
        """`job` resolved (it ended, or a service became healthy): each child may now decide.

        Through a worklist, not recursion: a child that ends at once (UPSTREAM_FAILED, SKIPPED)
        resolves in turn, and a 100,000-job chain must settle without growing the stack."""
        if job.released:
            return
        job.released = True
        self._released.append(job)
        if self._releasing:
            return
        self._releasing = True
        try:
            while self._released:
                self._release_children(self._released.popleft(), now)
        finally:
            self._releasing = False

    def _release_children(self, job: Job, now: float) -> None:
        run = self.runs[job.run_id]
        for child_id in job.children:
            child = run.jobs[child_id]
            child.waiting_on -= 1
            if child.state is JobState.PENDING and not child.not_before:
                self._decide(child, now)
        if job.spec.map_of:
            self._check_mapped(run.jobs[job.spec.map_of], now)

    def _decide(self, job: Job, now: float) -> None:
        """Apply the job's trigger rule to its parents: wait, run (if its condition holds), or end unrun."""
        verdict, reason = self._trigger(job)
        if verdict == "wait":
            return
        if verdict == "run":
            if job.spec.when:
                try:
                    holds = evaluate(job.spec.when, self._condition_names(job))
                except (ExpressionError, BadResult) as exc:
                    self._end_job(
                        job, JobState.FAILED, now, f"condition {job.spec.when[:200]!r} failed: {exc}"
                    )
                    return
                if not holds:
                    self._end_job(job, JobState.SKIPPED, now, f"condition is false: {job.spec.when}")
                    return
            self._parents_done(job, now)
            return
        state = {"skip": JobState.SKIPPED, "cancel": JobState.CANCELLED}.get(
            verdict, JobState.UPSTREAM_FAILED
        )
        self._end_job(job, state, now, reason)

    def _trigger(self, job: Job) -> tuple[str, str]:
        """("wait" | "run" | "skip" | "fail" | "cancel", reason) from the trigger rule and the parents' states."""
        run = self.runs[job.run_id]
        delivered, skipped, failed, cancelled = [], [], [], []
        for parent_id in job.parents:
            parent = run.jobs[parent_id]
            if parent.delivered:
                taken = parent.branch_taken
                (
                    skipped if parent.spec.branch and taken is not None and job.id not in taken else delivered
                ).append(parent)
            elif parent.state is JobState.SKIPPED:
                skipped.append(parent)
            elif parent.state is JobState.CANCELLED:
                cancelled.append(parent)
            elif parent.state.terminal:  # FAILED, UPSTREAM_FAILED, a service stopped before it was healthy
                failed.append(parent)
        waiting = job.waiting_on > 0
        rule = job.spec.trigger_rule
        if rule == "all_done":
            return ("wait", "") if waiting else ("run", "")
        if rule == "one_success":
            if delivered or not job.parents:
                return "run", ""

            if waiting:
                return "wait", ""
            if failed or cancelled:
                return "fail", f"no parent succeeded (upstream job {(failed or cancelled)[0].id} did not)"
            return "skip", "no parent succeeded (all were skipped)"
        if cancelled:
            return "cancel", self._upstream_reason(cancelled[0], "was cancelled")
        if failed:
            return "fail", self._upstream_reason(failed[0], "failed")

        if rule == "all_success" and skipped:
            first = skipped[0]
            return "skip", (
                f"not chosen by branch {first.id}"
                if first.delivered
                else f"upstream job {first.id} was skipped"
            )
        return ("wait", "") if waiting else ("run", "")

    @staticmethod
    def _upstream_reason(parent: Job, what: str) -> str:
        """Name the job where the trouble started, not the nearest parent it reached us through."""
        if parent.reason.startswith("upstream job "):
            return parent.reason
        return f"upstream job {parent.id} {what}"

    def _parents_done(self, job: Job, now: float) -> None:
        if job.spec.map_over:
            self._expand_map(job, now)
        elif job.spec.delay > 0:
            job.not_before = now + job.spec.delay
            job.reason = f"delayed {job.spec.delay:g}s after becoming ready"
            self._dirty_jobs.add(job.key)
            self._push_timer(job)
        else:
            self._make_ready(job, now)
