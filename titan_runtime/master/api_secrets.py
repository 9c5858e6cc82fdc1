"""The client API's secrets part: set, list and delete secrets, and what a submission naming them
must satisfy. A mixin of `TitanServicer` (same loop and credentials); the vault is
`titan_runtime/master/secrets.py`, the policy (the cluster token only) is in policy.py."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import grpc

from titan_runtime.core.model import JobSpec
from titan_runtime.master.auth import Caller
from titan_runtime.master.errors import RequestError
from titan_runtime.master.policy import Kind
from titan_runtime.master.secrets import SecretError, Secrets
from titan_runtime.proto import titan_pb2 as pb

if TYPE_CHECKING:
    from titan_runtime.master.api import TitanServicer

    _Base = TitanServicer
else:
    _Base = object


class SecretsApi(_Base):
    secrets: Secrets

    def check_secrets(self, specs: Iterable[JobSpec], caller: Caller | None) -> None:
        """Refuse specs naming secrets a job's credential submits, or secrets that are not set.

        A job's credential may not: a job could print any secret by submitting a child that uses it
        (and masking hides it only from the logs, not from a child that sends it elsewhere). Admins
        and submit tokens may: whoever holds a submit token can read the secrets through its jobs."""
        for spec in specs:
            if not spec.secrets:
                continue
            if caller is not None and not (caller.is_admin or caller.kind is Kind.SUBMIT):
                raise RequestError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"job {spec.id}: {caller.describe()} cannot submit jobs that use secrets (the child "
                    "could hand them to anyone); submit it with the cluster token, an admin or a submit token",
                )
            for name in spec.secrets.values():
                if not self.secrets.has(name):
                    raise RequestError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"job {spec.id}: secret {name} is not set; set it with "
                        f"`titan-runtime secret set {name}`",
                    )

    async def SetSecret(self, request: pb.SecretValue, context: grpc.aio.ServicerContext) -> pb.Empty:
        self.check_disk()
        try:
            await self._loop.in_store(self.secrets.set, request.name, request.value)
        except SecretError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.Empty()

    async def ListSecrets(self, request: pb.Empty, context: grpc.aio.ServicerContext) -> pb.SecretList:
        return pb.SecretList(
            secrets=[pb.SecretInfo(name=name, updated_at=at) for name, at in self.secrets.listing()]
        )

    async def DeleteSecret(self, request: pb.SecretRef, context: grpc.aio.ServicerContext) -> pb.Empty:
        if not await self._loop.in_store(self.secrets.delete, request.name):
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no secret {request.name[:128]!r}; list them with `titan-runtime secret list`",
            )
        return pb.Empty()
