"""SSH connections for the SSH provider (paramiko): who a target is, strict host-key checking
(trust on first use only when asked), running a command, and the reverse tunnel that gives hosts
which cannot reach the master a way in (a port on the host's loopback forwarded to the master,
alive as long as this side's SSH connection)."""

from __future__ import annotations

import logging
import shlex
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from titan_runtime.providers.base import ProviderError

log = logging.getLogger("titan.providers.ssh")

KNOWN_HOSTS = "known_hosts"


class SshError(ProviderError):
    """An SSH step failed; the message says which, the remote error verbatim, and what to do."""


# ---------------------------------------------------------------- targets and connections


@dataclass(frozen=True)
class SshTarget:
    user: str
    host: str
    port: int = 22

    @classmethod
    def parse(cls, text: str) -> SshTarget:
        user, sep, rest = text.partition("@")
        if not sep or not user or not rest:
            raise SshError(
                f"{text!r} is not USER@HOST[:PORT] (for example ubuntu@gpu-box or root@10.0.0.5:2222)"
            )
        host, port = rest, 22
        if rest.startswith("["):  # [v6]:port
            host, _, tail = rest[1:].partition("]")
            if tail.startswith(":"):
                port = int(tail[1:]) if tail[1:].isdigit() else -1
        elif rest.count(":") == 1:
            host, _, text_port = rest.partition(":")
            port = int(text_port) if text_port.isdigit() else -1
        if not host or not 0 < port < 65536:
            raise SshError(f"{text!r} is not USER@HOST[:PORT]: the port must be a number from 1 to 65535")
        return cls(user, host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}" + (f":{self.port}" if self.port != 22 else "")

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


class _UnknownHostKey(Exception):
    def __init__(self, key: paramiko.PKey) -> None:
        self.key = key


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Strict by default: an unknown host key is refused. With `accept`, it is saved and trusted."""

    def __init__(self, accept: bool, known_hosts: Path) -> None:
        self.accept = accept
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if not self.accept:
            raise _UnknownHostKey(key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        client.save_host_keys(str(self.known_hosts))
        self.known_hosts.chmod(0o600)
        log.info("trusted the new host key of %s (%s %s)", hostname, key.get_name(), key.fingerprint)


def connect(
    target: SshTarget,
    data_dir: Path,
    key: str | None = None,
    accept_new_host_key: bool = False,
    timeout: float = 10.0,
) -> paramiko.SSHClient:
    """An SSH connection, or an SshError that says why not and what to do."""
    known_hosts = data_dir / KNOWN_HOSTS
    client = paramiko.SSHClient()
    try:
        client.load_system_host_keys()
    except OSError:
        pass
    if known_hosts.exists():
        client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(_TrustOnFirstUse(accept_new_host_key, known_hosts))
    where = f"{target.host}:{target.port}"
    try:
        client.connect(
            target.host,
            port=target.port,
            username=target.user,
            key_filename=key,
            look_for_keys=key is None,
            allow_agent=key is None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
    except _UnknownHostKey as exc:
        client.close()
        raise SshError(
            f"the host key of {where} is not known ({exc.key.get_name()} {exc.key.fingerprint}). Check this "
            "fingerprint with the host's owner; if it is right, run again with --accept-new-host-key to "
            f"trust it on first use (it is saved in {known_hosts})"
        ) from None
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise SshError(
            f"the host key of {where} has CHANGED ({exc.key.get_name()} {exc.key.fingerprint}, expected "
            f"{exc.expected_key.fingerprint}): someone may be in the middle. If the host was reinstalled, "
            f"remove its line from {known_hosts} (or ~/.ssh/known_hosts) and trust the new key"
        ) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        with_key = f"the key {key}" if key else "your default keys and agent"
        raise SshError(
            f"{where} refused the SSH login of {target.user} with {with_key} ({exc}). Add the public key "
            f"to ~{target.user}/.ssh/authorized_keys on the host (ssh-copy-id {target}), or pass --key FILE"
        ) from None
    except TimeoutError as exc:
        client.close()
        raise SshError(
            f"cannot reach {where} over SSH: no answer within {timeout:g}s ({exc or 'timed out'}). Check the "
            "host name, that the host is up and that no firewall drops port " + str(target.port)
        ) from None
    except (OSError, paramiko.ssh_exception.NoValidConnectionsError) as exc:
        client.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SshError(
            f"cannot reach {where} over SSH: {reason}. Check the host name and port, and that sshd runs there"
        ) from None
    except paramiko.SSHException as exc:
        client.close()
        raise SshError(f"SSH to {where} failed: {exc}") from None
    return client


def run(client: paramiko.SSHClient, command: str, timeout: float = 600.0) -> tuple[int, str, str]:
    """Run a shell command on the host: (exit status, stdout, stderr)."""
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode("utf-8", "replace")
    err = stderr.read().decode("utf-8", "replace")
    return stdout.channel.recv_exit_status(), out, err


def _dir_expr(remote_dir: str) -> str:
    """A shell word for the remote directory, `~/` expanded by the remote shell."""
    if remote_dir == "~":
        return '"$HOME"'
    if remote_dir.startswith("~/"):
        return '"$HOME"/' + shlex.quote(remote_dir[2:])
    return shlex.quote(remote_dir)


# ---------------------------------------------------------------- the reverse tunnel


class ReverseTunnel:
    """Connections to `127.0.0.1:port` on the host come out here, to the master's address."""

    def __init__(self, client: paramiko.SSHClient, master: str) -> None:
        self.client = client
        host, _, port = master.rpartition(":")
        self.master = (host.strip("[]"), int(port))
        transport = client.get_transport()
        assert transport is not None
        self.port = transport.request_port_forward("127.0.0.1", 0, handler=self._accept)

    def _accept(self, channel: paramiko.Channel, origin: Any, server: Any) -> None:
        threading.Thread(target=self._pump, args=(channel,), daemon=True, name="titan-tunnel").start()

    def _pump(self, channel: paramiko.Channel) -> None:
        try:
            sock = socket.create_connection(self.master, timeout=10)
        except OSError as exc:
            log.warning("tunnel: cannot reach the master at %s:%d: %s", *self.master, exc)
            channel.close()
            return
        sock.settimeout(None)

        def copy(
            read: Callable[[int], bytes], write: Callable[[bytes], Any], done: Callable[[], Any]
        ) -> None:
            try:
                while True:
                    data = read(65536)
                    if not data:
                        break
                    write(data)
            except OSError:
                pass
            finally:
                try:
                    done()
                except OSError:
                    pass

        back = threading.Thread(
            target=copy, args=(sock.recv, channel.sendall, channel.shutdown_write), daemon=True
        )
        back.start()
        copy(channel.recv, sock.sendall, lambda: sock.shutdown(socket.SHUT_WR))
        back.join()
        sock.close()
        channel.close()
