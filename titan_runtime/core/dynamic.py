"""Dynamic DAGs: approval gates, feedback loops (iterations), maps over a parent's result, and
branches. A part of ClusterState (core/cluster.py), sharing its state: events in, effects out, no I/O."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from titan_runtime.core.common import BadResult, ClusterPart, NotFound, parse_result
from titan_runtime.core.model import (
    InvalidSpec,
    Job,
    JobState,
    RunState,
)


def check_gate_open(job: Job) -> None:
    """Raise InvalidSpec, saying why, unless the job's approval gate waits for a decision."""
    if not job.spec.approval.required:
        raise InvalidSpec(f"{job.ref} has no approval gate")
    if job.state is not JobState.WAITING_APPROVAL:
        if job.decision is not None:
            raise InvalidSpec(f"the gate of {job.ref} was already decided: {job.decision['decision']}")
        raise InvalidSpec(f"the gate of {job.ref} is not reached yet: the job is {job.state.value}")


class DynamicMixin(ClusterPart):
    def decide_gate(self, ref: str, approved: bool, by: str, comment: str, now: float) -> Job:
        """Approve or reject a job's gate. Refused unless the gate is open (reached, not decided)."""
        job = self.resolve(ref)
        check_gate_open(job)
        job.decision = {
            "decision": "approved" if approved else "rejected",
            "by": by,
            "at": now,
            "comment": comment,
        }
        if approved:
            self._end_job(job, JobState.SUCCEEDED, now, "")
        else:
            why = f"rejected by {by or 'someone'}" + (f": {comment}" if comment else "")
            self._end_job(job, JobState.FAILED, now, why)
        self._settle(now)
        return job

    def open_gates(self) -> list[Job]:
        return [
            j for run in self.runs.values() for j in run.jobs.values() if j.state is JobState.WAITING_APPROVAL
        ]

    def add_iteration(
        self, run_id: str, job_ids: Sequence[str], after: str, max_iterations: int, now: float
    ) -> list[Job]:
        """Enqueue the next iteration of a sub-graph of the run, to start once `after` has succeeded.

        The sub-graph is the jobs `job_ids` (by their first iteration's ids). Iteration k of job X is
        X@k; its parents inside the sub-graph are their iteration-k twins, the others are kept, and the
        sub-graph's roots also wait for `after`. Jobs waiting on the previous iteration's jobs wait on
        the new one instead. Refused past `max_iterations`.
        """
        run = self.run(run_id)
        if run.state is not RunState.RUNNING:
            raise InvalidSpec(f"run {run_id} has ended; no iteration can be added")
        caller = run.jobs.get(after)
        if caller is None:
            raise NotFound(f"run {run_id} has no job {after!r}")
        base = [j.partition("@")[0] for j in job_ids]
        if not base or len(set(base)) != len(base):
            raise InvalidSpec("give the jobs of the loop's sub-graph, each once")
        k = max(caller.spec.iteration, 1) + 1
        if k > max_iterations:
            raise InvalidSpec(
                f"max_iterations={max_iterations} reached: iteration {k} of {', '.join(base)} is refused"
            )
        previous = {b: (b if k == 2 else f"{b}@{k - 1}") for b in base}
        missing = [p for p in previous.values() if p not in run.jobs]
        if missing:
            raise InvalidSpec(f"iteration {k - 1} has no job {missing[0]!r}")
        renamed = {previous[b]: f"{b}@{k}" for b in base}
        specs = []
        for b in base:
            template = run.jobs[previous[b]]
            parents = [renamed.get(p, p) for p in template.parents]
            if not any(p in renamed for p in template.parents) and after not in parents:
                parents.append(after)
            specs.append(
                replace(
                    template.spec,
                    id=renamed[previous[b]],
                    parents=tuple(parents),
                    map_over=renamed.get(template.spec.map_over, template.spec.map_over),
                    iteration=k,
                )
            )
        self._validate_new_jobs(specs, existing=run.jobs)
        # Jobs outside the loop that wait on its previous iteration wait on this one instead.
        rewired = [
            job
            for job in run.jobs.values()
            if job.state is JobState.PENDING
            and job.id not in renamed
            and any(p in renamed for p in job.parents)
        ]
        for job in rewired:
            for old in [p for p in job.parents if p in renamed]:
                parent = run.jobs[old]
                parent.children.remove(job.id)
                if not parent.released:
                    job.waiting_on -= 1
            job.parents = [renamed.get(p, p) for p in job.parents]
            self._dirty_jobs.add(job.key)
        added = self._add_jobs(run, specs, now)
        for job in rewired:
            for new_parent in [p for p in job.parents if p in renamed.values()]:
                run.jobs[new_parent].children.append(job.id)
                job.waiting_on += 1
        self._settle(now)
        return added

    def _expand_map(self, job: Job, now: float) -> None:
        """map_over: one instance per item of the parent's list result; the job ends when they all have."""
        run = self.runs[job.run_id]
        try:
            items = parse_result(run.jobs[job.spec.map_over].result)
        except BadResult:
            items = None
        if not isinstance(items, list):
            self._end_job(
                job, JobState.FAILED, now, f"map_over: the result of {job.spec.map_over} is not a list"
            )
            return
        limits = self.config.limits
        if len(run.jobs) + len(items) > limits.jobs_per_run:
            what = f"map_over: {len(items):,} items of {job.spec.map_over} would give the run {len(run.jobs) + len(items):,} jobs"
            self._end_job(job, JobState.FAILED, now, limits.refusal("jobs_per_run", what))
            return
        specs = []
        for index, item in enumerate(items):
            env = {**job.spec.env, "TITAN_MAP_INDEX": str(index), "TITAN_MAP_ITEM": json.dumps(item)}
            specs.append(
                replace(
                    job.spec, id=f"{job.id}.{index}", map_over="", map_of=job.id, map_index=index, env=env
                )
            )
        clash = [s.id for s in specs if s.id in run.jobs]
        if clash:
            self._end_job(
                job, JobState.FAILED, now, f"map_over: job id {clash[0]} is already taken in the run"
            )
            return
        self._move(job, JobState.RUNNING)
        job.started_at = job.started_at or now
        job.reason = f"mapped over {len(items)} item(s) of {job.spec.map_over}"
        if not specs:
            self._check_mapped(job, now)
            return
        self._add_jobs(run, specs, now)

    def _check_mapped(self, job: Job, now: float) -> None:
        """A mapped job ends once every instance has: SUCCEEDED with their results in order, or FAILED."""
        if job.state.terminal:
            return
        run = self.runs[job.run_id]
        instances = [run.jobs[i] for i in job.mapped]
        if any(not i.state.terminal for i in instances):
            return
        failed = [i for i in instances if i.state is not JobState.SUCCEEDED]
        if failed:
            self._end_job(
                job,
                JobState.FAILED,
                now,
                f"{len(failed)} of {len(instances)} mapped jobs did not succeed ({failed[0].id}: {failed[0].state.value})",
            )
            return
        try:
            job.result = json.dumps([parse_result(i.result) for i in instances])
        except BadResult as exc:
            self._end_job(job, JobState.FAILED, now, f"map_over: {exc}")
            return
        self._succeed(job, now)

    def _condition_names(self, job: Job) -> dict[str, Any]:

        run = self.runs[job.run_id]
        results: dict[str, Any] = {}
        for parent_id in job.parents:
            try:
                results[parent_id] = parse_result(run.jobs[parent_id].result)
            except BadResult as exc:
                raise BadResult(f"parent {parent_id}: {exc}") from None
        names: dict[str, Any] = {}
        for parent_id, value in results.items():
            base = parent_id.partition("@")[0]  # a loop's later iterations answer to their first id too
            for name in (base, parent_id):
                if name.isidentifier():
                    names[name] = value
        names["results"] = results

        return names

    def _take_branch(self, job: Job, now: float) -> bool:
        """A branch job's result names the children to follow (a name, a list, or null for none)."""
        try:
            value = parse_result(job.result)
        except BadResult as exc:
            self._end_job(job, JobState.FAILED, now, f"branch: {exc}")
            return False
        names = (
            [value]
            if isinstance(value, str)
            else value
            if isinstance(value, list)
            else []
            if value is None
            else None
        )
        if names is None or not all(isinstance(n, str) for n in names):
            self._end_job(
                job,
                JobState.FAILED,
                now,
                "branch: the result must name children (a string or a list of strings)",
            )
            return False
        unknown = [n for n in names if n not in job.children]
        if unknown:
            self._end_job(
                job,
                JobState.FAILED,
                now,
                f"branch: {', '.join(unknown)} is not a child (children: {', '.join(job.children)})",
            )
            return False
        job.branch_taken = list(names)
        return True
