"""The client API's retention part: `titan-runtime gc` and `runs delete`. A mixin of
`TitanServicer`; policy.py admits only the cluster token and admin tokens (history is the cluster's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from titan_runtime.core.cluster import NotFound
from titan_runtime.master.collector import Collector, Report, RunIsLive
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.wire import to_message

if TYPE_CHECKING:
    from titan_runtime.master.api import TitanServicer

    _Base = TitanServicer
else:
    _Base = object


def report_to_pb(report: Report, dry_run: bool = False) -> pb.GcReport:
    return to_message(pb.GcReport, report, dry_run=dry_run)


class RetentionApi(_Base):
    collector: Collector | None = None

    async def _collector(self, context: grpc.aio.ServicerContext) -> Collector:
        if self.collector is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the master is starting: try again")
        assert self.collector is not None
        return self.collector

    async def CollectGarbage(self, request: pb.GcRequest, context: grpc.aio.ServicerContext) -> pb.GcReport:
        collector = await self._collector(context)
        return report_to_pb(await collector.collect(dry_run=request.dry_run), request.dry_run)

    async def DeleteRun(self, request: pb.RunRef, context: grpc.aio.ServicerContext) -> pb.GcReport:
        collector = await self._collector(context)
        try:
            return report_to_pb(await collector.delete_run(request.run_id))
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except RunIsLive as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        raise AssertionError
