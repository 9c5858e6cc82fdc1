"""The client API's autoscaler part: pool status and the decision log. A mixin of `TitanServicer`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from titan_runtime.core.resources import format_memory
from titan_runtime.proto import titan_pb2 as pb
from titan_runtime.wire import to_message

if TYPE_CHECKING:
    from titan_runtime.master.autoscaler import AutoscalerLoop


class AutoscalerApi:
    autoscaler: AutoscalerLoop | None = None  # set by the server when it runs with a cluster file

    async def GetAutoscalerStatus(
        self, request: pb.Empty, context: grpc.aio.ServicerContext
    ) -> pb.AutoscalerStatus:
        scaler = self.autoscaler
        if scaler is None:
            return pb.AutoscalerStatus(enabled=False)
        answer = pb.AutoscalerStatus(enabled=True, interval=scaler.interval)
        for status in scaler.core.status():
            spec = status.spec
            answer.pools.append(
                to_message(
                    pb.PoolStatus,
                    spec,
                    status,
                    waiting_jobs=status.waiting,
                    cpus="" if spec.cpus is None else str(spec.cpus),
                    memory="" if spec.memory_mb is None else format_memory(spec.memory_mb),
                    gpus=list(spec.gpus or ()),
                    declares_gpus=spec.gpus is not None,
                )
            )
        answer.unserved.extend(pb.TagSet(tags=sorted(tags)) for tags in scaler.core.unserved)
        answer.unserved_reasons.extend(scaler.core.unserved_reasons)
        return answer

    async def ListAutoscalerEvents(
        self, request: pb.AutoscalerEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AutoscalerEventList:
        scaler = self.autoscaler
        if scaler is None:
            return pb.AutoscalerEventList()
        events = [e for e in scaler.core.events if not request.pool or e.pool == request.pool]
        if request.limit > 0:
            events = events[-request.limit :]
        return pb.AutoscalerEventList(events=[pb.AutoscalerEvent(**e.to_dict()) for e in events])
