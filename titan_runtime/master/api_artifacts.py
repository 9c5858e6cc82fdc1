"""The client API's artifacts: content-addressed uploads and downloads, and names for them in a
run's namespace or the cluster's. A mixin of `TitanServicer` (same loop, store and credentials)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from titan_runtime.master.artifacts import ArtifactError
from titan_runtime.master.auth import caller_of
from titan_runtime.master.errors import RequestError
from titan_runtime.master.keys import artifact_key, usage_key
from titan_runtime.master.policy import Kind
from titan_runtime.proto import titan_pb2 as pb

if TYPE_CHECKING:
    from titan_runtime.master.api import TitanServicer

    _Base = TitanServicer
else:
    _Base = object


#: Named artifacts in one page of ListArtifacts: the default, and the most a client may ask for.
ARTIFACT_PAGE, MAX_ARTIFACT_PAGE = 1000, 10_000


class ArtifactsApi(_Base):
    async def PutArtifact(
        self, request_iterator: AsyncIterator[pb.ArtifactChunk], context: grpc.aio.ServicerContext
    ) -> pb.ArtifactRef:
        self.check_disk()
        run_id = caller_of(context, self._credentials).run_id
        usage = usage_key(run_id, "artifact_bytes")
        budget = self._limits.artifact_bytes_per_run
        used = int(await self._loop.in_store(self._loop.store.kv_get, usage) or 0) if run_id else 0
        upload = self._artifacts.upload()
        expected = ""
        try:
            async for chunk in request_iterator:
                if chunk.hash and not expected:
                    expected = chunk.hash
                upload.write(chunk.data)
                if run_id and used + upload.size > budget:
                    what = f"run {run_id} would have uploaded {used + upload.size:,} bytes"
                    raise RequestError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        self._limits.refusal("artifact_bytes_per_run", what),
                    )
                self.check_disk()
            artifact_hash = await asyncio.get_running_loop().run_in_executor(None, upload.commit, expected)
        except ArtifactError as exc:
            upload.abort()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except BaseException:
            upload.abort()
            raise
        if run_id:
            await self._loop.in_store(self._loop.store.kv_incr, usage, upload.size)
        return pb.ArtifactRef(hash=artifact_hash, size=upload.size)

    async def GetArtifact(
        self, request: pb.ArtifactRef, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ArtifactChunk]:
        try:
            if not self._artifacts.has(request.hash):
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no artifact {request.hash}")
            size = self._artifacts.size(request.hash)
            first = True
            for data in self._artifacts.chunks(request.hash):
                yield pb.ArtifactChunk(
                    hash=request.hash if first else "", size=size if first else 0, data=data
                )
                first = False
            if first:
                yield pb.ArtifactChunk(hash=request.hash, size=0, data=b"")
        except ArtifactError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    async def NameArtifact(
        self, request: pb.NamedArtifact, context: grpc.aio.ServicerContext
    ) -> pb.NamedArtifact:
        caller = caller_of(context, self._credentials)
        run_id = caller.run_id if caller.kind is Kind.JOB else request.run_id  # a job's go to its run's
        if run_id and not self._may_change(caller, run_id):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{caller.describe()} cannot name artifacts in run {run_id}",
            )
        self.check_disk()
        if not request.name or len(request.name) > 512 or "\0" in request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an artifact name must be 1-512 characters")
        try:
            present = self._artifacts.has(request.hash)
        except ArtifactError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if not present:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"artifact {request.hash} was never uploaded"
            )
        if run_id and self.history.header(run_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no run {run_id!r}")
        size = self._artifacts.size(request.hash)
        value = json.dumps({"hash": request.hash, "size": size})
        await self._loop.in_store(self._loop.store.kv_put, artifact_key(run_id, request.name), value)
        return pb.NamedArtifact(name=request.name, run_id=run_id, hash=request.hash, size=size)

    async def ResolveArtifact(
        self, request: pb.NamedArtifact, context: grpc.aio.ServicerContext
    ) -> pb.NamedArtifact:
        """Look a name up in the given run's namespace (a job's own run by default), then the cluster's."""
        caller = caller_of(context, self._credentials)
        scopes = [request.run_id or caller.run_id, ""]
        for scope in dict.fromkeys(scopes):
            found = await self._loop.in_store(self._loop.store.kv_get, artifact_key(scope, request.name))
            if found is not None:
                data = json.loads(found)
                return pb.NamedArtifact(name=request.name, run_id=scope, hash=data["hash"], size=data["size"])
        where = f"run {scopes[0]} or the cluster" if scopes[0] else "the cluster"
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no artifact named {request.name!r} in {where}")
        raise AssertionError

    async def ListArtifacts(
        self, request: pb.ArtifactListRequest, context: grpc.aio.ServicerContext
    ) -> pb.ArtifactList:
        """A run's named artifacts (or the cluster's), by name, a page of them."""
        if request.limit < 0 or len(request.run_id) > 256:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "limit must be 0 or positive; a run id of at most 256"
            )
        limit = min(request.limit or ARTIFACT_PAGE, MAX_ARTIFACT_PAGE)
        prefix = artifact_key(request.run_id, "")
        store = self._loop.store
        keys = await self._loop.in_store(store.kv_keys, prefix, "", limit + 1)
        answer = pb.ArtifactList(more=len(keys) > limit)
        for key, _ in keys[:limit]:
            found = await self._loop.in_store(store.kv_get, key)
            if found is not None:  # deleted since it was listed
                data = json.loads(found)
                name = key[len(prefix) :]
                answer.artifacts.append(
                    pb.NamedArtifact(name=name, run_id=request.run_id, hash=data["hash"], size=data["size"])
                )
        return answer

    async def HasArtifact(
        self, request: pb.ArtifactRef, context: grpc.aio.ServicerContext
    ) -> pb.HasArtifactResponse:
        try:
            return pb.HasArtifactResponse(present=self._artifacts.has(request.hash))
        except ArtifactError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
