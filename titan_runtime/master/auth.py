"""Who may call the master: the cluster token, and per-run credentials handed to jobs.

Every RPC carries `authorization: Bearer <token>` metadata. The cluster token (generated on first
start, file mode 0600) admits workers and clients. A job gets a credential derived from the
cluster secret and its run id (`tj1.<run>.<mac>`): the master can verify it without storing
it, and it never reveals the cluster token to the code a job runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from titan_runtime.master.jointokens import JoinTokens
from titan_runtime.master.policy import Kind, refusal
from titan_runtime.master.throttle import AuthFailures

log = logging.getLogger("titan.master.auth")

TOKEN_FILE = "token"
_JOB_PREFIX = "tj1."


def load_or_create_token(data_dir: Path) -> str:
    """Read the cluster token from `data_dir/token`, creating it (mode 0600) on first start."""
    path = data_dir / TOKEN_FILE
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


@dataclass(frozen=True)
class Caller:
    """The authenticated identity of an RPC: the cluster (full access) or one run's jobs."""

    run_id: str | None = None  # None: cluster token
    join: str = ""  # a one-time join token: the launch it admits a worker for
    expired: bool = False  # a job credential whose run ended (or is unknown): admits nothing

    @property
    def is_cluster(self) -> bool:
        return self.run_id is None and not self.join

    @property
    def kind(self) -> Kind:
        if self.join:
            return Kind.JOIN
        return Kind.CLUSTER if self.run_id is None else Kind.JOB

    def describe(self) -> str:
        """Who is calling, as the audit log says it: never the token itself."""
        if self.kind is Kind.CLUSTER:
            return "the cluster token"
        if self.kind is Kind.JOIN:
            return f"the join token of launch {self.join}"
        return f"a job of run {self.run_id}" + (" (expired)" if self.expired else "")


#: How long a job credential outlives its run: a call a job sent just before it ended may still be
#: on its way.
CREDENTIAL_GRACE = 60.0


class Credentials:
    """A job credential is good while its run runs and `grace` seconds after. `run_ended(run_id)`
    says when the run ended: 0 while it runs, None when the master does not know it. Without
    `run_ended`, job credentials do not expire."""

    def __init__(
        self,
        cluster_token: str,
        token_path: Path,
        join_tokens: JoinTokens | None = None,
        run_ended: Callable[[str], float | None] | None = None,
        grace: float = CREDENTIAL_GRACE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._token = cluster_token.encode()
        self.token_path = token_path
        self.join_tokens = join_tokens or JoinTokens()
        self._issued: dict[str, str] = {}
        self._run_ended = run_ended
        self.grace = grace
        self._clock = clock

    def job_credential(self, run_id: str) -> str:
        credential = self._issued.get(run_id)
        if credential is None:
            if len(self._issued) >= 4096:  # issued at every assignment; most runs have many jobs
                self._issued.clear()
            credential = self._issued[run_id] = f"{_JOB_PREFIX}{run_id}.{self._mac(run_id)}"
        return credential

    def _mac(self, run_id: str) -> str:
        return hmac.new(self._token, b"job:" + run_id.encode(), hashlib.sha256).hexdigest()[:40]

    def identify(self, token: str) -> Caller | None:
        """The caller a presented token stands for, or None when it is not valid."""
        if hmac.compare_digest(token.encode(), self._token):
            return Caller()
        if token.startswith(_JOB_PREFIX):
            run_id, _, mac = token[len(_JOB_PREFIX) :].rpartition(".")
            if run_id and hmac.compare_digest(mac.encode(), self._mac(run_id).encode()):
                return Caller(run_id=run_id, expired=self._expired(run_id))
        join = self.join_tokens.lookup(token, time.time())
        if join is not None:
            return Caller(join=join.launch_id)
        return None

    def _expired(self, run_id: str) -> bool:
        if self._run_ended is None:
            return False
        ended = self._run_ended(run_id)
        return ended is None or (ended > 0 and self._clock() - ended > self.grace)


def bearer(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    return ""


def caller_of(context: grpc.aio.ServicerContext, credentials: Credentials) -> Caller:
    """The caller of an RPC the interceptor already admitted."""
    return credentials.identify(bearer(context.invocation_metadata())) or Caller(run_id="")


def _aborting_handler(
    handler: grpc.RpcMethodHandler,
    code: grpc.StatusCode,
    details: str,
    before: Callable[[grpc.aio.ServicerContext], Awaitable[None]] | None = None,
) -> grpc.RpcMethodHandler:
    async def abort(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        if before is not None:
            await before(context)
        await context.abort(code, details)

    # The request is still decoded: what wraps this (the audit log) may look at what was asked.
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort, **kwargs)
    return grpc.unary_unary_rpc_method_handler(abort, **kwargs)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without a valid token, or that the caller's kind may not make (policy.py),
    before any servicer code runs."""

    def __init__(self, credentials: Credentials, failures: AuthFailures | None = None) -> None:
        self._credentials = credentials
        self._failures = failures or AuthFailures()

    async def _slow_down(self, context: grpc.aio.ServicerContext) -> None:
        """Answer a failed authentication later the more often its host failed (throttle.py)."""
        peer = context.peer()
        verdict = self._failures.failed(peer, time.monotonic())
        if verdict.log:
            log.warning(
                "failed authentication from %s (%d in a row from its host; answering in %.1fs)",
                peer,
                verdict.count,
                verdict.delay,
            )
        if verdict.delay:
            await asyncio.sleep(verdict.delay)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        token = bearer(handler_call_details.invocation_metadata)
        where = f"the cluster token is in {self._credentials.token_path} on the master's host"
        if not token:
            return _aborting_handler(
                handler,
                grpc.StatusCode.UNAUTHENTICATED,
                f"missing token: {where}; pass --token or set TITAN_TOKEN",
                self._slow_down,
            )
        caller = self._credentials.identify(token)
        if caller is None:
            return _aborting_handler(
                handler,
                grpc.StatusCode.UNAUTHENTICATED,
                f"wrong token: {where}; pass it with --token or TITAN_TOKEN",
                self._slow_down,
            )
        if caller.expired:
            return _aborting_handler(
                handler,
                grpc.StatusCode.UNAUTHENTICATED,
                f"this job credential is no longer valid: run {caller.run_id} has ended or is unknown "
                "(a job's credential lasts as long as its run)",
            )
        refused = refusal(handler_call_details.method, caller.kind)
        if refused:
            return _aborting_handler(handler, grpc.StatusCode.PERMISSION_DENIED, refused)
        return handler
