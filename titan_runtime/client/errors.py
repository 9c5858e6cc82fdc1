"""Exceptions the SDK raises. Every failure is an exception with a sentence a user can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from titan_runtime.masters import leader_named

if TYPE_CHECKING:
    import grpc


class TitanError(Exception):
    """Base class of every Titan SDK error."""


class TitanConnectionError(TitanError, ConnectionError):
    """The master could not be reached; the message names the address tried.

    `unavailable` is true when gRPC said UNAVAILABLE (no connection, or a call cut by a master that
    went away): the call did not happen or may be asked again, which is what lets a client ride out
    a restart. A call that timed out is not marked: the master may still be working on it.
    `leader` is set when the master was a standby, which did nothing with the call (docs/ha.md).
    """

    def __init__(self, message: str, unavailable: bool = False, leader: str | None = None) -> None:
        super().__init__(message)
        self.unavailable = unavailable
        #: Set when a standby master answered: the leader it named ("" while none leads).
        self.leader = leader


class Unauthenticated(TitanError, PermissionError):
    """The master refused the token (missing or wrong)."""


class PermissionDenied(TitanError, PermissionError):
    """The token is valid but may not do this (a job's credential acting on another run)."""


class JobNotFound(TitanError, LookupError):
    """No job or run by that reference."""


class InvalidJob(TitanError, ValueError):
    """The master (or the SDK before sending) refused a job or run definition, or a bad argument."""


class Conflict(TitanError):
    """The request does not fit the current state (incr on a non-integer value, a missing artifact)."""


class TitanTimeoutError(TitanError, TimeoutError):
    """A wait ran out of time (the job or run goes on): catch it as a TitanError or a TimeoutError."""


class ResourceExhausted(TitanError):
    """Over one of the master's limits (KV keys, upload bytes), or its disk is nearly full; the
    message names the limit and how to raise it."""


def _tls_trouble(details: str, address: str) -> tuple[str, bool]:
    """What a failed connection says of TLS on one side and not the other, or of a certificate:
    (the message, or "" when it says nothing of it; whether to try again, as for a master that went
    down, which a closed socket may also be)."""
    lowered = details.lower()
    if "wrong_version_number" in lowered:
        return (
            f"the Titan master at {address} does not serve TLS: dial it without --tls-ca (unset "
            "TITAN_TLS_CA), or start it with --tls-dir"
        ), False
    if "handshake" in lowered or "certificate" in lowered or "ssl" in lowered:
        return (
            f"cannot set up TLS with the Titan master at {address}: its certificate is not signed by this "
            "CA or not made for this address (`titan-runtime certs init --host NAME`), or it requires a "
            "client certificate (--tls-cert, --tls-key). " + details.rsplit(": ", 1)[0][-300:]
        ), False
    if "socket closed" in lowered:  # a master stopping or swamped closes sockets too: not only TLS
        return (
            f"the Titan master at {address} closed the connection: if it serves TLS, give its CA with "
            "--tls-ca (TITAN_TLS_CA), and a client certificate if it requires one (--tls-cert, "
            "--tls-key); if it does not, it may be stopping or overloaded: try again"
        ), True
    return "", False


#: The status codes (by name: grpc loads only when a call is made) that say what was wrong with
#: the request, not with the connection.
_BY_CODE: dict[str, type[TitanError]] = {
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied,
    "NOT_FOUND": JobNotFound,
    "INVALID_ARGUMENT": InvalidJob,
    "FAILED_PRECONDITION": Conflict,
    "RESOURCE_EXHAUSTED": ResourceExhausted,
}


def error_from_rpc(exc: grpc.RpcError, address: str) -> TitanError:
    import grpc

    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else "") or str(exc)
    tls, retry = _tls_trouble(details, address)
    if tls and code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return TitanConnectionError(tls, unavailable=retry)
    if (
        code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        and "connect" in details.lower()
    ):
        return TitanConnectionError(
            f"cannot reach the Titan master at {address}: is it running? "
            "(start one with `titan-runtime up`, or set --address / TITAN_ADDRESS)",
            unavailable=code == grpc.StatusCode.UNAVAILABLE,
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        leader = leader_named(exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None)
        return TitanConnectionError(
            f"the Titan master at {address} is unavailable: {details}", unavailable=True, leader=leader
        )
    if code is not None and code.name in _BY_CODE:
        return _BY_CODE[code.name](details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return TitanConnectionError(f"the Titan master at {address} did not answer in time: {details}")
    return TitanError(f"{code.name if code else 'error'}: {details}")
