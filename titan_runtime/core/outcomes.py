"""How an attempt's end decides its job: success (and then a branch or an approval gate), a
retry after a failure or a lost worker, or the job's failure; and how its jobs end a run. A part
of ClusterState (core/cluster.py), sharing its state: events in, effects out, no I/O."""

from __future__ import annotations

import heapq
from dataclasses import replace

from titan_runtime.core.common import FAILED_STATES, ClusterPart, describe_exit, result_problem
from titan_runtime.core.effects import AttemptExit
from titan_runtime.core.model import Attempt, AttemptState, Job, JobState, Run, RunState


class OutcomesMixin(ClusterPart):
    def _finish(self, job: Job, attempt: Attempt, exit: AttemptExit, now: float) -> None:
        reason = describe_exit(exit)
        if job.state.terminal:
            # Cancelled (or otherwise ended) while it ran: record how the process went, nothing more.
            self._close_attempt(job, attempt, AttemptState.CANCELLED, now, reason or job.reason, exit)
            return
        if exit.result is not None:
            problem = result_problem(exit.result)
            if problem:  # the worker checks this too: only a worker that lies gets here
                exit = replace(exit, outcome="failed", reason=problem, result=None)
                reason = problem
        if exit.outcome == "cancelled" and attempt.state is AttemptState.ASSIGNED:
            # Handed back before its process started (a stopping worker): not an attempt at all.
            self._requeue_unstarted(job, attempt, now, reason or "handed back before it started")
            return
        if job.spec.is_service:
            self._finish_service(job, attempt, exit, reason, now)
            return
        if exit.outcome == "succeeded":
            self._close_attempt(job, attempt, AttemptState.SUCCEEDED, now, "", exit)
            job.exit_code = exit.exit_code
            job.result = exit.result
            self._succeed(job, now)
            return
        if exit.outcome == "cancelled":
            # The worker gave it back (drain deadline): run it again elsewhere, not a failure.
            self._close_attempt(
                job, attempt, AttemptState.CANCELLED, now, reason or "handed back by its worker", exit
            )
            job.avoid = attempt.worker_id
            self._make_ready(job, now)
            job.reason = f"attempt {attempt.number} was handed back by its worker; requeued"
            return
        self._close_attempt(job, attempt, AttemptState.FAILED, now, reason, exit)
        job.exit_code = exit.exit_code
        job.failures += 1
        self._dirty_jobs.add(job.key)
        policy = job.spec.retries
        if job.failures < policy.attempts:
            wait = policy.backoff(job.failures)
            job.avoid = attempt.worker_id
            self._retry(job, now, wait, f"attempt {attempt.number} failed ({reason})")
        else:
            suffix = f" after {job.failures} attempts" if job.failures > 1 else ""
            if exit.result is not None:  # a function task's exception, for its caller to raise
                job.result = exit.result
            self._fail(job, now, f"{reason}{suffix}")

    def _retry(self, job: Job, now: float, wait: float, why: str) -> None:
        if wait > 0:
            self._move(job, JobState.PENDING)
            job.not_before = now + wait
            job.reason = f"{why}; retrying in {wait:g}s"
            self._push_timer(job)
        else:
            self._make_ready(job, now)
            job.reason = f"{why}; retrying"

    def _lose(self, job: Job, attempt: Attempt, now: float, reason: str, counted: bool = True) -> None:
        """The attempt's worker is gone (or never got it): retry elsewhere, counted apart from failures."""
        self._close_attempt(job, attempt, AttemptState.LOST, now, f"lost: {reason}")
        if job.state.terminal or job.current is not attempt:
            return
        job.avoid = attempt.worker_id
        if job.spec.is_service:  # a service always comes back, elsewhere and with a new port if need be
            self._make_ready(job, now)
            job.reason = f"rescheduled: {reason}"
            return
        if counted:
            job.lost += 1
        self._dirty_jobs.add(job.key)
        if job.lost > job.spec.retries.max_lost:
            self._fail(
                job,
                now,
                f"lost {job.lost} times (limit retries.max_lost={job.spec.retries.max_lost}); last: {reason}",
            )
        else:
            self._retry(job, now, 0.0, f"attempt {attempt.number} lost ({reason})")

    def _succeed(self, job: Job, now: float) -> None:
        if job.spec.branch and not self._take_branch(job, now):
            return
        gate = job.spec.approval
        if gate.required and job.decision is None:
            self._move(job, JobState.WAITING_APPROVAL)
            job.gate_deadline = now + gate.timeout
            job.reason = gate.message or "waiting for approval"
            heapq.heappush(self._timers, (job.gate_deadline, next(self._timer_seq), job.key))
            return
        self._end_job(job, JobState.SUCCEEDED, now, "")

    def _fail(self, job: Job, now: float, reason: str) -> None:
        self._end_job(job, JobState.FAILED, now, reason)

    def _maybe_finish_run(self, run: Run, now: float) -> None:
        """End the run once every job has (and no hold keeps it open): FAILED if a job that
        counts failed, CANCELLED if one was cancelled, else SUCCEEDED."""
        if run.unfinished > 0 or run.state is not RunState.RUNNING:
            return
        if run.open_until > now:  # held open for more jobs: look again when the hold ends
            heapq.heappush(self._timers, (run.open_until, next(self._timer_seq), (run.id, "")))
            return
        jobs = [
            j for j in run.jobs.values() if not j.spec.allow_failure
        ]  # whose failure was handled do not count
        failed = [j for j in jobs if j.state is JobState.FAILED] or [
            j for j in jobs if j.state in FAILED_STATES
        ]
        if failed:
            run.state = RunState.FAILED
            first = failed[0]
            run.reason = f"job {first.id} {first.state.value.lower()}: {first.reason}".rstrip(": ")

        elif any(j.state is JobState.CANCELLED for j in jobs):
            run.state = RunState.CANCELLED
            run.reason = next(j.reason for j in jobs if j.state is JobState.CANCELLED)
        else:
            run.state = RunState.SUCCEEDED
            run.reason = ""
        run.ended_at = now
        counts: dict[str, int] = {}
        for job in run.jobs.values():
            counts[job.state.value] = counts.get(job.state.value, 0) + 1
        run.counts = counts
        self._dirty_runs.add(run.id)
        self._track_ended(run)
