"""Long-running services: finding their instances, stopping and restarting them, health, crash
restarts, redeploys, and the endpoints and environment other jobs see. A part of ClusterState
(core/cluster.py), sharing its state: events in, effects out, no I/O."""

from __future__ import annotations

from titan_runtime.core.common import ClusterPart, NotFound, env_name
from titan_runtime.core.effects import (
    AttemptExit,
    CancelAttempt,
)
from titan_runtime.core.model import (
    Attempt,
    AttemptState,
    Job,
    JobState,
)


class ServicesMixin(ClusterPart):
    def service_jobs(self, service_id: str) -> list[Job]:
        """Every job that ran or runs this service, oldest deployment first."""
        found = [self.runs[r].jobs[j] for r, j in self.services.get(service_id, ())]
        if not found:
            raise NotFound(f"no service {service_id!r}: list them with `titan-runtime services`")
        return found

    def live_service_jobs(self, service_id: str) -> list[Job]:
        return [job for job in self.service_jobs(service_id) if not job.state.terminal]

    def stop_service(self, service_id: str, now: float, reason: str = "stopped by user") -> list[str]:
        """Stop every live instance of a service for good (its whole process tree); no restart."""
        stopped = []
        for job in self.live_service_jobs(service_id):
            self._stop_job(job, now, reason, JobState.STOPPED)
            stopped.append(job.ref)
        self._settle(now)
        return stopped

    def restart_service(self, service_id: str, now: float) -> list[str]:
        """Restart every live instance now: stop its process, start a new one (not counted as a crash)."""
        restarted = []
        for job in self.live_service_jobs(service_id):
            attempt = job.current
            if attempt is not None and not attempt.state.terminal:
                job.restart_requested = True
                self._effects.append(CancelAttempt(attempt.worker_id, attempt.id, "restart requested"))
            elif job.state is JobState.RESTARTING:
                self._make_ready(job, now)
            restarted.append(job.ref)
        self._settle(now)
        return restarted

    def _became_healthy(self, job: Job, now: float) -> None:
        self._move(job, JobState.HEALTHY)
        job.reason = ""
        if not job.healthy_once:
            job.healthy_once = True
            self._notify_children(job, now)
        self._retire_older_deployments(job.spec.service_id, now)

    def _retire_older_deployments(self, service_id: str, now: float) -> None:
        """Redeploy: once every instance of the newest deployment is HEALTHY, stop the older ones."""
        jobs = self.service_jobs(service_id)
        newest_run = jobs[-1].run_id
        newest = [j for j in jobs if j.run_id == newest_run]
        if not all(j.state is JobState.HEALTHY for j in newest):
            return
        for job in jobs:
            if job.run_id != newest_run and not job.state.terminal:
                self._stop_job(job, now, f"replaced by the deployment in run {newest_run}", JobState.STOPPED)

    def _finish_service(self, job: Job, attempt: Attempt, exit: AttemptExit, reason: str, now: float) -> None:
        """A service's process ended without being stopped: restart it, or fail it for good."""
        if job.restart_requested or exit.outcome == "cancelled":
            # Restarted on request, or handed back by a draining worker: start again now, no crash counted.
            requested = job.restart_requested
            job.restart_requested = False
            why = "restart requested" if requested else reason or "handed back by its worker"
            self._close_attempt(job, attempt, AttemptState.CANCELLED, now, why, exit)
            if requested:
                job.restarts += 1
            else:
                job.avoid = attempt.worker_id
            self._make_ready(job, now)
            job.reason = "restarting on request" if requested else "handed back by its worker; rescheduled"
            return
        self._close_attempt(job, attempt, AttemptState.FAILED, now, reason, exit)
        job.exit_code = exit.exit_code
        if (
            exit.outcome == "error"
        ):  # it could not start at all (its port is taken...): restarting cannot help
            self._fail(job, now, reason)
            return
        policy = job.spec.restart
        job.crashes = (*(t for t in job.crashes if now - t < policy.window), now)
        if len(job.crashes) > policy.attempts:
            self._fail(
                job,
                now,
                f"crash loop: {len(job.crashes)} crashes within {policy.window:g}s "
                f"(restart.attempts={policy.attempts}); last: {reason}",
            )
            return
        job.restarts += 1
        wait = policy.backoff(len(job.crashes), self._jitter())
        self._move(job, JobState.RESTARTING)
        job.not_before = now + wait
        job.reason = f"crashed ({reason}); restarting in {wait:.1f}s"
        self._push_timer(job)

    def endpoints(self, job: Job) -> list[str]:
        """Where a service instance answers (its current attempt's address), if it runs."""
        current = job.current
        if current is None or current.state.terminal or not current.endpoint:
            return []
        return [current.endpoint]

    def _service_env(self, job: Job) -> dict[str, str]:
        """TITAN_SERVICE_<ID>_ADDR for each service the job depends on (replicas comma-separated)."""
        run = self.runs[job.run_id]
        found: dict[str, list[str]] = {}
        for parent_id in job.spec.parents:
            parent = run.jobs[parent_id]
            if parent.spec.is_service:
                found.setdefault(parent.spec.service_id, []).extend(self.endpoints(parent))
        return {env_name(service): ",".join(addresses) for service, addresses in found.items()}
