"""The client API's dynamic-DAG part: extending runs, loops, approval gates, agent runs, saved DAGs
and schedules. A mixin of `TitanServicer` (same loop, state and credentials)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import grpc

from titan_runtime.core.cluster import NotFound
from titan_runtime.core.dynamic import check_gate_open
from titan_runtime.core.model import InvalidSpec, Job, JobState
from titan_runtime.master.auth import caller_of
from titan_runtime.master.convert import job_to_pb, run_to_pb
from titan_runtime.master.errors import RequestError
from titan_runtime.master.loop import collector_paused
from titan_runtime.master.schedules import ScheduleError, Schedules
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.store.base import RunQuery

if TYPE_CHECKING:
    from titan_runtime.master.api import TitanServicer

    _Base = TitanServicer
else:
    _Base = object

#: The runs of agents listed: the latest ones.
AGENT_RUNS = 1000


class DynamicApi(_Base):
    schedules: Schedules

    async def AddJobs(
        self, request: pb.AddJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitRunResponse:
        caller = await self._check_scope(request.run_id, context, write=True)
        self.check_disk()
        state = self._state

        def add(now: float) -> list[Job]:
            self._check_replaces_only_its_own(specs, caller)
            return state.add_jobs(request.run_id, specs, now, request.open_for)

        try:
            with collector_paused(len(request.jobs)):
                specs = self._specs(request.jobs)
                self.check_secrets(specs, caller)
                jobs = await self._loop.call(add)
        except RequestError as exc:
            await context.abort(exc.code, str(exc))
        except NotFound as exc:
            await self._abort_not_live(request.run_id, exc, context)
        except InvalidSpec as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.SubmitRunResponse(run_id=request.run_id, job_ids=[j.id for j in jobs])

    async def AddIteration(
        self, request: pb.AddIterationRequest, context: grpc.aio.ServicerContext
    ) -> pb.SubmitRunResponse:
        await self._check_scope(request.run_id, context, write=True)
        self.check_disk()
        state = self._state
        try:
            jobs = await self._loop.call(
                lambda now: state.add_iteration(
                    request.run_id, list(request.jobs), request.after, request.max_iterations or 10, now
                )
            )
        except NotFound as exc:
            await self._abort_not_live(request.run_id, exc, context)
        except InvalidSpec as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return pb.SubmitRunResponse(run_id=request.run_id, job_ids=[j.id for j in jobs])

    async def _abort_not_live(self, run_id: str, exc: NotFound, context: grpc.aio.ServicerContext) -> None:
        """A run the core does not hold: it has ended (and left memory), or there is none."""
        ended = self.history.header(run_id)
        if ended is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"run {run_id} has ended ({ended.state.value}); jobs can only be added to a running run",
        )

    # -------------------------------------------------------------- approvals

    async def DecideGate(self, request: pb.GateDecision, context: grpc.aio.ServicerContext) -> pb.JobInfo:
        state = self._state
        try:
            job = self.history.resolve(request.ref)
            await self._check_scope(job.run_id, context, write=True)
            if job.run_id not in state.runs:  # its run has ended: the gate is decided or never reached
                check_gate_open(job)
            job = await self._loop.call(
                lambda now: state.decide_gate(request.ref, request.approved, request.by, request.comment, now)
            )
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except InvalidSpec as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return job_to_pb(state, job)

    async def ListApprovals(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.JobList:
        state = self._state
        gates = [
            job
            for run in state.runs.values()
            for job in run.jobs.values()
            if job.spec.approval.required and (job.state is JobState.WAITING_APPROVAL or job.decision)
        ]
        gates.sort(
            key=lambda j: (j.state is not JobState.WAITING_APPROVAL, -(j.decision or {}).get("at", 0.0))
        )
        return pb.JobList(jobs=[job_to_pb(state, j) for j in gates])

    # -------------------------------------------------------------- agent runs

    async def ListAgentRuns(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.AgentRunList:
        groups: dict[str, list] = {}  # type: ignore[type-arg]
        latest = itertools.islice(self.history.runs(RunQuery(agent_run_id="*", limit=AGENT_RUNS)), AGENT_RUNS)
        for run in sorted(latest, key=lambda r: r.seq):
            groups.setdefault(run.agent_run_id, []).append(run)
        out = []
        for agent_id, runs in groups.items():
            states = {r.state.value for r in runs}
            state = next((s for s in ("RUNNING", "FAILED", "CANCELLED") if s in states), "SUCCEEDED")
            out.append(
                pb.AgentRunInfo(
                    id=agent_id,
                    state=state,
                    runs=[run_to_pb(self._state, r, with_jobs=False) for r in runs],
                    created_at=runs[0].created_at,
                )
            )
        out.sort(key=lambda a: a.created_at, reverse=True)
        return pb.AgentRunList(agent_runs=out)

    # -------------------------------------------------------------- saved DAGs and schedules

    async def SaveDag(self, request: pb.SavedDag, context: grpc.aio.ServicerContext) -> pb.SavedDag:
        if not request.name or "/" in request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a saved DAG needs a name without '/'")
        self.check_disk()
        try:
            self._specs(request.run.jobs)  # refuse now what could never be submitted
        except RequestError as exc:
            await context.abort(exc.code, str(exc))
        request.run.name = request.run.name or request.name
        return await self.schedules.save_dag(request)

    async def ListSavedDags(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.SavedDagList:
        return pb.SavedDagList(dags=await self.schedules.list_dags())

    async def DeleteSavedDag(self, request: pb.SavedDagRef, context: grpc.aio.ServicerContext) -> pb.Empty:
        if not await self.schedules.delete_dag(request.name):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no saved DAG {request.name!r}")
        return pb.Empty()

    async def SubmitSavedDag(
        self, request: pb.SavedDagRef, context: grpc.aio.ServicerContext
    ) -> pb.SubmitRunResponse:
        dag = await self.schedules.get_dag(request.name)
        if dag is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no saved DAG {request.name!r}: list them with list_saved_dags"
            )
        submission = pb.SubmitRunRequest()
        submission.CopyFrom(dag.run)
        submission.run_id = request.run_id
        try:
            return await self.submit(submission, caller_of(context, self._credentials))
        except RequestError as exc:
            await context.abort(exc.code, str(exc))
            raise

    async def AddSchedule(self, request: pb.Schedule, context: grpc.aio.ServicerContext) -> pb.Schedule:
        if not request.name or "/" in request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a schedule needs a name without '/'")
        self.check_disk()
        try:
            return await self.schedules.add_schedule(request)
        except ScheduleError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise

    async def ListSchedules(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.ScheduleList:
        return pb.ScheduleList(schedules=await self.schedules.list_schedules())

    async def DeleteSchedule(self, request: pb.ScheduleRef, context: grpc.aio.ServicerContext) -> pb.Empty:
        if not await self.schedules.delete_schedule(request.name):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no schedule {request.name!r}")
        return pb.Empty()
