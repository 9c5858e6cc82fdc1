"""A cluster's own certificate authority, for TLS between its hosts (`titan-runtime certs`).

`init` makes a CA and the master's certificate, valid for the names and addresses clients dial;
`issue` makes client certificates (workers, clients) for a master that requires them. Keys are EC
P-256, written 0600 before anything is in them; certificates are PEM. Nothing here talks to the
network: the files are copied to the hosts that need them (`ssh bootstrap` does it for workers).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from titan_runtime.tls import CA, CA_KEY, MASTER, MASTER_KEY

KINDS = ("worker", "client")


class CertError(Exception):
    """Said to the user as is: what is wrong and what to do."""


def _write(path: Path, data: bytes, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        if private:
            os.fchmod(fh.fileno(), 0o600)  # also when the file was there before
        fh.write(data)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Titan"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _subject_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(["localhost", "127.0.0.1", "::1", socket.gethostname(), *hosts]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _sign(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    days: int,
    ca: bool = False,
    usage: Sequence[x509.ObjectIdentifier] = (),
    names: Sequence[x509.GeneralName] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # clocks of other hosts may lag
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usage)), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def init(directory: Path, hosts: Sequence[str] = (), days: int = 825) -> list[Path]:
    """Make the CA and the master's certificate in `directory`; refuse to overwrite a CA."""
    if (directory / CA).exists():
        raise CertError(
            f"{directory / CA} exists: a new CA would make every certificate it signed useless; "
            "use another --dir, or remove the directory first"
        )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key, key = _key(), _key()
    ca_name = _name("Titan cluster CA", "ca")
    ca = _sign(ca_name, ca_key, ca_name, ca_key, days=3650, ca=True)
    master = _sign(
        _name("titan-master", "master"),
        key,
        ca_name,
        ca_key,
        days,
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
        names=_subject_names(hosts),
    )
    written = [directory / CA, directory / CA_KEY, directory / MASTER, directory / MASTER_KEY]
    _write(written[1], _key_pem(ca_key), private=True)
    _write(written[0], ca.public_bytes(serialization.Encoding.PEM), private=False)
    _write(written[3], _key_pem(key), private=True)
    _write(written[2], master.public_bytes(serialization.Encoding.PEM), private=False)
    return written


def issue_pem(directory: Path, kind: str, name: str, days: int = 365) -> tuple[bytes, bytes]:
    """A client certificate (`kind` worker or client) named `name`, signed by the CA in
    `directory`: (certificate, key) as PEM, written nowhere."""
    if kind not in KINDS:
        raise CertError(f"unknown certificate kind {kind!r}: use worker or client")
    if not name or "/" in name or name.startswith("."):
        raise CertError(f"invalid name {name!r}: use letters, digits, '-', '_' or '.'")
    try:
        ca = x509.load_pem_x509_certificate((directory / CA).read_bytes())
        ca_key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    except OSError as exc:
        raise CertError(
            f"cannot read the CA in {directory} ({exc.strerror or exc}): make one with "
            "`titan-runtime certs init`, or give its --dir"
        ) from None
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    cert = _sign(_name(name, kind), key, ca.subject, ca_key, days, usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def issue(directory: Path, kind: str, name: str, days: int = 365) -> tuple[Path, Path]:
    """`issue_pem`, written next to the CA as KIND-NAME.pem and KIND-NAME-key.pem (0600)."""
    cert, key = issue_pem(directory, kind, name, days)
    cert_path, key_path = directory / f"{kind}-{name}.pem", directory / f"{kind}-{name}-key.pem"
    _write(key_path, key, private=True)
    _write(cert_path, cert, private=False)
    return cert_path, key_path
