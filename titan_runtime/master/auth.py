"""Who may call the master: the cluster token, named tokens with a role, per-run credentials
handed to jobs, and join tokens.

Every RPC carries `authorization: Bearer <token>` metadata. The cluster token (generated on first
start, file mode 0600) admits workers and clients with every right; named tokens (tokens.py) carry
one role each. A job gets a credential derived from the cluster secret and its run id
(`tj1.<run>.<mac>`): the master can verify it without storing it, and it never reveals the
cluster token to the code a job runs. What each kind may call is policy.py's table.
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

from titan_runtime.master.interceptor import HandlerInterceptor
from titan_runtime.master.jointokens import JoinTokens
from titan_runtime.master.policy import POLICY, UNDECLARED, Access, Kind, is_mutating, refusal
from titan_runtime.master.throttle import AuthFailures
from titan_runtime.master.tokens import NamedTokens

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
    """The authenticated identity of an RPC, as policy.py knows it (its `kind`)."""

    kind: Kind = Kind.CLUSTER
    run_id: str = ""  # a job's credential: its run
    join: str = ""  # a one-time join token: the launch it admits a worker for
    name: str = ""  # a named token: its name
    expired: bool = False  # a job credential whose run ended, or a named token past its expiry

    @property
    def is_admin(self) -> bool:
        """The cluster token or an admin token: every right."""
        return self.kind in (Kind.CLUSTER, Kind.ADMIN)

    @property
    def submitter(self) -> str:
        """What the runs it submits record as their submitter ("" for an admin): only the same
        submitter may submit the same run id again, or change that run."""
        if self.is_admin:
            return ""
        return f"run:{self.run_id}" if self.kind is Kind.JOB else f"token:{self.name}"

    @property
    def kv_owner(self) -> str:
        """Whose the KV keys it creates are ("": the cluster's): a job's are its run's."""
        if self.is_admin:
            return ""
        return self.run_id if self.kind is Kind.JOB else f"token:{self.name}"

    def may_change(self, run_id: str, submitted_by: str) -> bool:
        """A job changes its own run; a submit token the runs it submitted; an admin any."""
        if self.is_admin:
            return True
        if self.kind is Kind.JOB:
            return run_id == self.run_id
        return self.kind is Kind.SUBMIT and submitted_by == self.submitter

    def describe(self) -> str:
        """Who is calling, as the audit log says it: never the token itself."""
        if self.kind is Kind.CLUSTER:
            return "the cluster token"
        if self.kind is Kind.JOIN:
            return f"the join token of launch {self.join}"
        if self.kind is Kind.JOB:
            return f"a job of run {self.run_id}" + (" (expired)" if self.expired else "")
        return f"the {self.kind.value} token {self.name}" + (" (expired)" if self.expired else "")


def describe_owner(owner: str) -> str:
    """A KV key's or a run's owner as a sentence says it."""
    if not owner:
        return "the cluster"
    kind, _, name = owner.partition(":")
    if kind == "token":
        return f"the token {name}"
    return f"run {name if kind == 'run' else owner}"


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
        named: NamedTokens | None = None,
    ) -> None:
        self._token = cluster_token.encode()
        self.token_path = token_path
        self.join_tokens = join_tokens or JoinTokens()
        self.named = named or NamedTokens()
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
                return Caller(Kind.JOB, run_id=run_id, expired=self._expired(run_id))
        named = self.named.lookup(token)
        if named is not None:
            return Caller(named.kind, name=named.name, expired=named.expired(self._clock()))
        join = self.join_tokens.lookup(token, time.time())
        if join is not None:
            return Caller(Kind.JOIN, join=join.launch_id)
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
    """The caller of an RPC the interceptor already admitted (one revoked since is no one: it may
    change nothing, and nothing it makes is the cluster's)."""
    found = credentials.identify(bearer(context.invocation_metadata()))
    return found or Caller(Kind.READ, name="(revoked)", expired=True)


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


def _reads_only(handler: grpc.RpcMethodHandler, method: str, why: str) -> grpc.RpcMethodHandler:
    """A unary handler that refuses a request that would change something (a KV put from a read
    token): the interceptor cannot see the request, the wrapped handler can."""
    assert handler.unary_unary is not None, f"{method}: only unary calls are open to reads only"
    behavior = handler.unary_unary

    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if is_mutating(method, request):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{why}: {method.rsplit('/', 1)[-1]} {getattr(request, 'op', '')} changes something",
            )
        return await behavior(request, context)

    return grpc.unary_unary_rpc_method_handler(
        guarded,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class AuthInterceptor(HandlerInterceptor):
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

    def wrap(
        self, handler: grpc.RpcMethodHandler, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
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
            why = (
                f"this job credential is no longer valid: run {caller.run_id} has ended or is unknown "
                "(a job's credential lasts as long as its run)"
                if caller.kind is Kind.JOB
                else f"the token {caller.name} has expired: make a new one with `titan-runtime token create`"
            )
            return _aborting_handler(handler, grpc.StatusCode.UNAUTHENTICATED, why)
        method = handler_call_details.method
        refused = refusal(method, caller.kind)
        if refused:
            return _aborting_handler(handler, grpc.StatusCode.PERMISSION_DENIED, refused)
        if POLICY.get(method, UNDECLARED).access(caller.kind) is Access.READS:
            return _reads_only(handler, method, f"a {caller.kind.value} token changes nothing")
        return handler
