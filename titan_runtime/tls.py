"""TLS for the master's port: what the master serves with, what clients and workers dial with.

A client or worker uses TLS when it is given the cluster's CA (`--tls-ca` or TITAN_TLS_CA), and
presents a client certificate when also given one (`--tls-cert`/`--tls-key`, TITAN_TLS_CERT and
TITAN_TLS_KEY) for a master started with `--require-client-cert`. The bearer token is checked as
ever: TLS keeps it, and everything else, from the network.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

#: File names in a TLS directory (`titan-runtime certs init` makes them).
CA, CA_KEY = "ca.pem", "ca-key.pem"
MASTER, MASTER_KEY = "master.pem", "master-key.pem"


class TlsError(Exception):
    """Said to the user as is."""


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class ClientTls:
    """What a client or worker dials a TLS master with (paths, so they can be passed on)."""

    ca: str
    cert: str = ""
    key: str = ""

    def credentials(self) -> grpc.ChannelCredentials:
        cert = _read(self.cert, "client certificate") if self.cert else None
        key = _read(self.key, "client key") if self.key else None
        return grpc.ssl_channel_credentials(_read(self.ca, "CA certificate"), key, cert)

    def args(self) -> list[str]:
        """The same as command-line options, for a worker started from here."""
        out = ["--tls-ca", self.ca]
        if self.cert:
            out += ["--tls-cert", self.cert, "--tls-key", self.key]
        return out


def channel(address: str, tls: ClientTls | None, options: Any, aio: bool = False) -> Any:
    """A gRPC channel (asyncio's with `aio`) to the master: TLS when given `tls`, plaintext otherwise.
    `address` may list several masters sharing a store (`A:9090,B:9090`): see `grpc_target`."""
    module = grpc.aio if aio else grpc
    target, first_host = grpc_target(address)
    if first_host and tls is not None:  # one certificate for every master: checked against the first name
        options = [*options, ("grpc.ssl_target_name_override", first_host)]
    if tls is None:
        return module.insecure_channel(target, options=options)
    return module.secure_channel(target, tls.credentials(), options=options)


def grpc_target(address: str) -> tuple[str, str]:
    """(target, first host): one master's HOST:PORT as it is; several as one target of their
    resolved addresses, which gRPC's pick_first policy tries in order and moves on from when one
    fails. Only the leader of masters sharing a store listens, so a client follows it (docs/ha.md).
    The first host is what a TLS certificate is checked against (""  for one master)."""
    import socket

    parts = [a.strip() for a in address.split(",") if a.strip()]
    if len(parts) <= 1:
        return address, ""
    v4: list[str] = []
    v6: list[str] = []
    for part in parts:
        host, sep, port = part.rpartition(":")
        host = host.strip("[]")
        if not sep or not port.isdigit():
            raise ValueError(f"invalid master address {part!r} in {address!r}: expected HOST:PORT,HOST:PORT")
        try:
            found = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ValueError(f"cannot resolve the master {part!r}: {exc}") from None
        for family, _, _, _, sockaddr in found[:1]:
            if family == socket.AF_INET6:
                v6.append(f"[{sockaddr[0]}]:{port}")
            else:
                v4.append(f"{sockaddr[0]}:{port}")
    first = parts[0].rpartition(":")[0].strip("[]")
    return (f"ipv4:{','.join(v4)}" if v4 else f"ipv6:{','.join(v6)}"), first


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve()) if path else ""


def client_tls(ca: str | None = None, cert: str | None = None, key: str | None = None) -> ClientTls | None:
    """From the arguments, else TITAN_TLS_CA/CERT/KEY; None (plaintext) without a CA."""
    ca = ca or os.environ.get("TITAN_TLS_CA") or ""
    cert = cert or os.environ.get("TITAN_TLS_CERT") or ""
    key = key or os.environ.get("TITAN_TLS_KEY") or ""
    if bool(cert) != bool(key):
        raise TlsError(
            "a client certificate needs both --tls-cert and --tls-key (TITAN_TLS_CERT, TITAN_TLS_KEY)"
        )
    if not ca:
        if cert:
            raise TlsError("a client certificate without --tls-ca: give the cluster's CA too (TITAN_TLS_CA)")
        return None
    return ClientTls(_absolute(ca), _absolute(cert), _absolute(key))


@dataclass(frozen=True)
class ServerTls:
    """What the master serves TLS with; `require_client_cert`: only clients with a certificate
    the CA signed may connect at all."""

    cert: str
    key: str
    ca: str
    require_client_cert: bool = False

    @classmethod
    def from_dir(cls, directory: Path, require_client_cert: bool = False) -> ServerTls:
        return cls(
            str(directory / MASTER), str(directory / MASTER_KEY), str(directory / CA), require_client_cert
        )

    def credentials(self) -> grpc.ServerCredentials:
        pair = (_read(self.key, "master key"), _read(self.cert, "master certificate"))
        return grpc.ssl_server_credentials(
            [pair],
            root_certificates=_read(self.ca, "CA certificate"),
            require_client_auth=self.require_client_cert,
        )

    def client(self) -> ClientTls:
        return ClientTls(str(Path(self.ca).resolve()))


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the port on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


#: The client certificate `up` and local pools give their workers when the master requires one.
LOCAL_WORKER = "local"


def local_client_tls(server: ServerTls) -> ClientTls:
    """How workers on the master's own host dial it. When it requires client certificates they get
    one made by the CA next to the master's certificate (`worker-local.pem`), made once."""
    if not server.require_client_cert:
        return server.client()
    directory = Path(server.ca).parent
    cert, key = directory / f"worker-{LOCAL_WORKER}.pem", directory / f"worker-{LOCAL_WORKER}-key.pem"
    if not (cert.exists() and key.exists()):
        if not (directory / CA_KEY).exists():
            raise TlsError(
                f"local workers need a client certificate and {directory / CA_KEY} is not there to make "
                f"one: make it with `titan-runtime certs issue worker {LOCAL_WORKER} --dir DIR` into {directory}"
            )
        from titan_runtime import certs  # cryptography: only for this

        cert, key = certs.issue(directory, "worker", LOCAL_WORKER)
    return ClientTls(str(Path(server.ca).resolve()), str(cert.resolve()), str(key.resolve()))
